"""The worker's stand-in for torch._dynamo (grader/isolate/lazy_dynamo.py): training never imports
the real module, trains exactly as without the stand-in, and anything that compiles still gets it.

Each case runs in a fresh interpreter: whether torch._dynamo is imported is per-process state."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

TRAIN = """
import json, sys
import torch
from grader.isolate import lazy_dynamo
if sys.argv[1] == "stand-in":
    lazy_dynamo.install()
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
optimizers = [torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), torch.optim.Adam(net.parameters(), lr=1e-3)]
x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 2, (16,))
for optimizer in optimizers:
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
trained = {"loss": loss.item(), "weights": net[0].weight.flatten().tolist(),
           "real_dynamo_loaded": "torch._dynamo" in sys.modules and lazy_dynamo.is_loaded()}
reset = torch._dynamo.reset  # any attribute the optimizers do not use brings the real module
reset()
trained["then"] = [lazy_dynamo.is_loaded(), type(torch._dynamo).__name__]
print(json.dumps(trained))
"""


def _python(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_training_with_the_stand_in_matches_training_without_it_and_never_imports_dynamo() -> None:
    # and, once the optimizers are done, any other attribute imports the real module
    plain = json.loads(_python(TRAIN, "plain"))
    stood_in = json.loads(_python(TRAIN, "stand-in"))
    assert plain["real_dynamo_loaded"] is True  # what torch does on its own: the cost the stand-in saves
    assert stood_in["real_dynamo_loaded"] is False
    assert stood_in["then"] == [True, "module"]
    assert stood_in["loss"] == pytest.approx(plain["loss"], rel=1e-5, abs=1e-6)
    assert stood_in["weights"] == pytest.approx(plain["weights"], rel=1e-5, abs=1e-6)


def test_code_that_compiles_or_configures_dynamo_gets_the_real_module() -> None:
    out = _python("""
        import sys
        import torch
        from grader.isolate import lazy_dynamo
        lazy_dynamo.install()
        net = torch.nn.Linear(3, 2)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        net(torch.ones(4, 3)).sum().backward()
        optimizer.step()
        assert not lazy_dynamo.is_loaded()
        import torch._dynamo.config  # a submodule: the stand-in gives way
        torch._dynamo.config.suppress_errors = False
        assert lazy_dynamo.is_loaded() and sys.modules["torch._dynamo"] is torch._dynamo
        compiled = torch.compile(net, backend="eager")
        loss = compiled(torch.ones(4, 3)).sum()
        loss.backward()
        optimizer.step()  # the optimizer built before the real import still steps
        assert torch.allclose(compiled(torch.ones(4, 3)), net(torch.ones(4, 3)))
        print("compiled", float(loss))
    """)
    assert out.startswith("compiled")

