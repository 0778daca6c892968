"""What submission.py carries: each model's file and the project modules it needs, each
after what it imports, none of them importing what the scorer lacks."""

import ast
from pathlib import Path

import pytest

from overnight.champion.embedding import EmbeddingError, embedded_modules
from overnight.models.registry import builtin_names, find_model


@pytest.mark.parametrize("name", builtin_names())
def test_every_module_comes_after_what_it_imports(name):
    model = find_model(name)
    extra = model.cls.extra_requirement
    modules = embedded_modules([model.source], [extra] if extra else [])
    assert [m.label for m in modules][-2:] == [f"overnight/models/{model.source.name}",
                                               "overnight/models/ensemble.py"]
    defined: set[str] = set()
    for module in modules:
        tree = ast.parse(module.source, feature_version=(3, 10))  # the scorer's Python
        # each name it imported from the project is defined by a file embedded before it
        wanted = {alias.asname or alias.name
                  for node in ast.parse(module.path.read_text()).body
                  if isinstance(node, ast.ImportFrom)
                  and (node.level or (node.module or "").startswith("overnight"))
                  for alias in node.names}
        assert wanted <= defined, (module.label, wanted - defined)
        defined |= {n.name for n in tree.body
                    if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
        defined |= {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                    if isinstance(t, ast.Name)}


@pytest.mark.parametrize(("source", "refusal"), [
    ("from .helpers import thing\n", "relative import outside the project"),
    ("import overnight.models.base\n", "import names from the project's modules"),
    ("from overnight.models import base\n", r"overnight\.models, a package"),
    ("import braindecode\n", "imports braindecode"),
])
def test_what_cannot_run_beside_torch_alone_is_refused(tmp_path: Path, source: str,
                                                       refusal: str):
    model = tmp_path / "mine.py"
    model.write_text(source)
    with pytest.raises(EmbeddingError, match=refusal):
        embedded_modules([model])


def test_an_extra_library_is_allowed_when_the_model_names_it(tmp_path: Path):
    model = tmp_path / "mine.py"
    model.write_text("import braindecode\n")
    assert model.resolve() in [m.path for m in embedded_modules([model], ["braindecode"])]
