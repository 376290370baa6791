"""``inputs.require_choice``: every refusal of a fixed value, the library's and the command line's, in the same
words (``unknown <what> '<value>'; choose one of: a, b, c``)."""

from __future__ import annotations

import pytest

from hqsam_edge.errors import UsageError
from hqsam_edge.inputs import VARIANTS_MEANING, require_choice


def test_require_choice_returns_the_value_or_lists_the_choices():
    assert require_choice("b", ("a", "b"), "letter") == "b"
    with pytest.raises(UsageError, match=r"^unknown letter 'c'; choose one of: a, b$"):
        require_choice("c", ("a", "b"), "letter")
    with pytest.raises(UsageError, match=r"^unknown letter 'c'; choose one of: a, b \(a: first\)$"):
        require_choice("c", ("a", "b"), "letter", hint="a: first")


def test_library_refusals_use_its_words():
    from hqsam_edge.data.hqseg import find_datasets
    from hqsam_edge.model.build import backbone_spec, check_variant
    from hqsam_edge.model.download import download_checkpoint

    refusals = [
        (lambda: backbone_spec("vit_x"), "unknown backbone 'vit_x'; choose one of: vit_tiny, vit_b, vit_l, vit_h"),
        (lambda: check_variant("hqq"), f"unknown variant 'hqq'; choose one of: hq, sam ({VARIANTS_MEANING})"),
        (lambda: download_checkpoint("vit_b", "mobile", progress=False),
         f"unknown variant 'mobile'; choose one of: hq, sam ({VARIANTS_MEANING})"),
        (lambda: find_datasets(["DUTS-TR"], "val"), "unknown val data set 'DUTS-TR'; choose one of: DIS5K-VD, "),
    ]
    for refuse, words in refusals:
        with pytest.raises(UsageError) as err:
            refuse()
        assert str(err.value).startswith(words), err.value


def test_triton_refusals_use_its_words(tmp_path):
    from hqsam_edge.serve.triton import TritonSpec, write_repository

    with pytest.raises(UsageError, match=r"^unknown triton backend 'torch'; choose one of: onnxruntime, tensorrt$"):
        write_repository(TritonSpec(folder=str(tmp_path), out=str(tmp_path / "r"), backend="torch"))
    with pytest.raises(UsageError, match=r"^unknown instance kind 'tpu'; choose one of: gpu, cpu$"):
        write_repository(TritonSpec(folder=str(tmp_path), out=str(tmp_path / "r"), kind="tpu"))
