"""The served model's input contract, in-process: the compiled checks refuse exactly what
pandera refuses (checked against pandera itself on the same frames), name the column and the
rule, and the contract is found in mlbuild.yaml or upstream of the artifact."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.errors as perr
import pandera.pandas as pa
import pytest

from mlbuild.errors import ConfigError
from mlbuild.serve.contract import ContractViolation, compile_schema, input_contract
from tests.conftest import Project

REPO = Path(__file__).resolve().parents[1]


def _example_schema() -> pa.DataFrameSchema:
    sys.path.insert(0, str(REPO))
    try:
        from stages.schemas import raw_schema
    finally:
        sys.path.remove(str(REPO))
    return raw_schema()


def _mixed_schema() -> pa.DataFrameSchema:
    """Every compiled rule and one custom check that stays with pandera."""
    return pa.DataFrameSchema({
        "label": pa.Column(int),
        "age": pa.Column(int, [pa.Check.ge(0), pa.Check.lt(130)]),
        "score": pa.Column(float, pa.Check.in_range(0.0, 1.0, include_max=False),
                           nullable=True),
        "ratio": pa.Column(float, [pa.Check.gt(0), pa.Check.ne(0.5)]),
        "city": pa.Column(str, [pa.Check.isin(["paris", "oslo"]),
                                pa.Check.str_length(2, 5)]),
        "flag": pa.Column(bool),
        "even": pa.Column(int, pa.Check(lambda s: s % 2 == 0, name="is_even")),
    })


def _mixed_frame(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    return pd.DataFrame({
        "age": rng.integers(-5, 140, rows),
        "score": np.where(rng.random(rows) < 0.1, np.nan, rng.random(rows) * 1.2),
        "ratio": rng.choice([0.5, 0.1, -0.2, 2.0], rows),
        "city": rng.choice(["paris", "oslo", "rome", "p"], rows),
        "flag": rng.random(rows) < 0.5,
        "even": rng.integers(0, 10, rows),
    })


def _pandera_accepts(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> bool:
    try:
        schema.validate(frame)
    except perr.SchemaError:
        return False
    return True


@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_checks_refuse_exactly_what_pandera_refuses(seed: int) -> None:
    schema = _mixed_schema()
    contract = compile_schema(schema, ["label"], "mixed")
    without_label = schema.remove_columns(["label"])
    rng = np.random.default_rng(seed)
    verdicts = set()
    for rows in [1, 2, 3] * 40:
        frame = _mixed_frame(rng, rows)
        try:
            contract.check(frame)
            ours = True
        except ContractViolation as exc:
            ours = False
            assert exc.column in frame.columns and exc.rule in str(exc)
        assert ours == _pandera_accepts(without_label, frame), frame.to_dict("records")
        verdicts.add(ours)
    assert verdicts == {True, False}  # both verdicts were exercised


def test_the_example_contract_is_the_raw_pixels_and_names_the_rule() -> None:
    contract = compile_schema(_example_schema(), ["label"], "stages.schemas:raw_schema")
    assert [f.name for f in contract.features] == [f"pixel{i}" for i in range(64)]
    assert {f.datatype for f in contract.features} == {"INT64"}
    rows = np.arange(128).reshape(2, 64) % 17
    checked = contract.check(pd.DataFrame(rows.astype(float), columns=contract.names))
    assert checked.dtypes.unique().tolist() == [np.dtype("int64")]  # 3.0 -> 3: lossless
    assert (checked.to_numpy() == rows).all()
    cases = {
        "in_range": (lambda f: f.assign(pixel5=17), "column 'pixel5': 17 at row 0"),
        "dtype": (lambda f: f.astype(float).assign(pixel3=2.5), "column 'pixel3': 2.5"),
        "not_nullable": (lambda f: f.astype(float).assign(pixel9=np.nan), "'pixel9': null"),
        "required": (lambda f: f.drop(columns="pixel7"), "column 'pixel7' is missing"),
        "strict": (lambda f: f.assign(label=3), "unknown column 'label'"),
    }
    good = pd.DataFrame(rows[:1], columns=contract.names)
    for rule, (spoil, words) in cases.items():
        with pytest.raises(ContractViolation, match=rule) as info:
            contract.check(spoil(good.copy()))
        assert words in str(info.value) and info.value.rule == rule
        assert "\n" not in str(info.value)


def test_objects_that_are_all_numbers_pass_and_a_string_among_them_is_named() -> None:
    contract = compile_schema(_example_schema(), ["label"], "raw")
    frame = pd.DataFrame([[1] * 64], columns=contract.names).astype(object)
    assert contract.check(frame).iloc[0].tolist() == [1] * 64
    frame.iloc[0, 10] = "7"
    with pytest.raises(ContractViolation, match=r"column 'pixel10': '7' at row 0 is not a number"):
        contract.check(frame)


def test_dropping_an_unknown_column_or_every_column_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot drop 'target'"):
        compile_schema(_example_schema(), ["target"], "raw")
    schema = pa.DataFrameSchema({"label": pa.Column(int)})
    with pytest.raises(ConfigError, match="no column is left"):
        compile_schema(schema, ["label"], "raw")
    dates = pa.DataFrameSchema({"when": pa.Column("datetime64[ns]")})
    with pytest.raises(ConfigError, match="column 'when' has type"):
        compile_schema(dates, [], "dates")


class _Fitted:
    """Stands for a fitted scikit-learn estimator: only the attribute the contract reads."""

    def __init__(self, names: list[str]) -> None:
        self.feature_names_in_ = np.array(names, dtype=object)


def test_the_contract_comes_from_mlbuild_yaml_and_must_match_the_fitted_features(
        tmp_path: Path) -> None:
    (tmp_path / "schemas.py").write_text(
        "import pandera.pandas as pa\n"
        "def rows():\n"
        "    return pa.DataFrameSchema({'y': pa.Column(int), 'a': pa.Column(float),"
        " 'b': pa.Column(float)})\n")
    (tmp_path / "mlbuild.yaml").write_text(
        "serving:\n  clf:\n    input: schemas:rows\n    drop: [y]\n")
    contract = input_contract(tmp_path, "clf", None, _Fitted(["a", "b"]))
    assert contract.names == ["a", "b"] and contract.source == "schemas:rows"
    with pytest.raises(ConfigError, match=r"fitted on a, b, c"):
        input_contract(tmp_path, "clf", None, _Fitted(["a", "b", "c"]))
    (tmp_path / "mlbuild.yaml").write_text("serving:\n  clf:\n    input: schemas:rows\n")
    assert input_contract(tmp_path, "clf", None, _Fitted(["b", "a"])).names == ["b", "a"]
    with pytest.raises(ConfigError, match=r"serving\.clf\.drop"):
        input_contract(tmp_path, "clf", None, None)
    (tmp_path / "mlbuild.yaml").write_text("serving:\n  clf:\n    inptu: schemas:rows\n")
    with pytest.raises(ConfigError, match=r"unknown key 'inptu'.*did you mean 'input'"):
        input_contract(tmp_path, "clf", None, None)
    with pytest.raises(ConfigError, match="model 'other' has no input contract"):
        input_contract(tmp_path, "other", None, None)


def test_without_a_serving_block_the_raw_data_contract_upstream_of_the_artifact_is_used(
        example_built: Project) -> None:
    """The example's model: prepare's input contract on data/raw/train.csv, minus what the
    model was not fitted on (the label)."""
    settings = example_built.path / "mlbuild.yaml"
    text = settings.read_text()
    if "serving:" in text:
        settings.write_text(text[:text.index("serving:")])
    pixels = [f"pixel{i}" for i in range(64)]
    contract = input_contract(example_built.path, "model", None, _Fitted(pixels))
    assert contract.source == "stages.schemas:raw_schema" and contract.names == pixels
    with pytest.raises(ConfigError, match="model 'nomodel' has no input contract"):
        input_contract(example_built.path, "nomodel", None, None)
