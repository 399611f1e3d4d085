"""DNA tokenizers: conversions, refusals, reverse complement, k-mers."""
import random

import pytest
import torch

from mambakit.genomics import CharTokenizer, KmerTokenizer, complement_map, reverse_complement, reverse_complement_ids
from mambakit.genomics.tokenizers import BASE_OFFSET, CLS_ID, EOS_ID


def _random_dna(n, alphabet="ACGT"):
    return "".join(random.choice(alphabet) for _ in range(n))


def test_roundtrip_and_specials():
    tok = CharTokenizer(add_cls=True, add_eos=True)
    seq = _random_dna(57) + "N"
    ids = tok.encode(seq)
    assert ids.dtype == torch.int64 and ids.shape == (len(seq) + 2,)
    assert ids[0] == CLS_ID and ids[-1] == EOS_ID
    assert tok.decode(ids) == seq
    assert tok.decode(ids, keep_special=True).startswith("[CLS]")
    assert tok.vocab_size == 9


def test_lowercase_soft_masking():
    seq = _random_dna(40)
    assert torch.equal(CharTokenizer().encode(seq.lower()), CharTokenizer().encode(seq))
    with pytest.raises(ValueError, match="lower case"):
        CharTokenizer(lowercase="error").encode("ACgt")


def test_iupac_mapped_with_warning_or_refused():
    with pytest.warns(UserWarning, match="2 IUPAC"):
        ids = CharTokenizer().encode("ACRTY")
    assert CharTokenizer().decode(ids) == "ACNTN"
    with pytest.raises(ValueError, match="IUPAC"):
        CharTokenizer(iupac="error").encode("ACRT")


@pytest.mark.parametrize("bad, match", [("ACGU", "RNA"), ("AC-GT", "'-'"), ("ACGX", "'X'"), ("", "empty"),
                                        ("ACGé", "non-ASCII")])
def test_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        CharTokenizer().encode(bad)


def test_rna_conversion_and_length_limit():
    assert CharTokenizer(rna="t").decode(CharTokenizer(rna="t").encode("ACGU")) == "ACGT"
    with pytest.raises(ValueError, match="max_length=10"):
        CharTokenizer(max_length=10).encode(_random_dna(11))
    with pytest.raises(TypeError):
        CharTokenizer().encode(b"ACGT")


def test_reverse_complement_ids_matches_strings():
    tok = CharTokenizer()
    seq = _random_dna(33, "ACGTN")
    rc = reverse_complement_ids(tok.encode(seq))
    assert tok.decode(rc) == reverse_complement(seq)
    batch = torch.randint(0, 9, (3, 17))
    assert torch.equal(reverse_complement_ids(reverse_complement_ids(batch)), batch)
    cm = complement_map()
    assert all(cm[cm[i]] == i for i in range(9)) and cm[BASE_OFFSET] == BASE_OFFSET + 3
    with pytest.raises(ValueError):
        reverse_complement_ids(torch.tensor([[9]]))


def test_kmer_tokenizer():
    tok = KmerTokenizer(k=3, stride=1)
    ids = tok.encode("ACGTA")
    assert tok.decode(ids) == ["ACG", "CGT", "GTA"]
    assert tok.encode("ACNTA").tolist()[0] == tok.unk_id
    assert KmerTokenizer(k=2, stride=2).encode("ACGTAC").shape == (3,)
    assert tok.vocab_size == 5 + 64
    with pytest.raises(ValueError, match="shorter than k"):
        tok.encode("AC")
