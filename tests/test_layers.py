"""Three package layers, no arrow back up: probes (bottom) imports neither stabgan nor reports,
reports (middle) imports probes but never stabgan, stabgan (top) may import both."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What each package may not import: the packages above it.
FORBIDDEN = {"probes": {"stabgan", "reports"}, "reports": {"stabgan"}}

# A bring-your-own non-saturating + R1 loop on 2-D points, watched and guarded by probes alone; it prints
# what the test checks, among it every stabgan module the process loaded. Spectra and diversity
# read every 10 x log_every steps: once, at the last step.
OWN_LOOP = r"""
import json, sys

import torch
from torch import nn

import probes
import probes.collapse

torch.manual_seed(0)
torch.set_num_threads(1)
run_dir, Z, B = sys.argv[1], 4, 32
data = torch.randn(512, 2) * 0.5 + 1.0
G = nn.Sequential(nn.Linear(Z, 16), nn.ReLU(), nn.Linear(16, 2))
D = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1), nn.Flatten(0))
opt_g = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.0, 0.9))
opt_d = torch.optim.Adam(D.parameters(), 4e-4, betas=(0.0, 0.9))
guard = probes.CollapseGuard(run_dir)
monitor = probes.Monitor(run_dir, generator=G, critic=D, log_every=3, guard=guard,
                         objective=probes.Objective("ns", "r1"),
                         probes=probes.build_probes("default", z_dim=Z, log_every=3))
softplus = torch.nn.functional.softplus
for step in range(1, 31):
    real = data[torch.randint(len(data), (B,))]
    fake = G(torch.randn(B, Z)).detach()
    d_real, d_fake = D(torch.cat([real, fake])).chunk(2)
    x = real.detach().requires_grad_(True)
    grad, = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    r1 = grad.square().sum(dim=1).mean()
    loss_d = softplus(-d_real).mean() + softplus(d_fake).mean() + 0.5 * r1
    opt_d.zero_grad(); loss_d.backward(); opt_d.step()
    loss_g = softplus(-D(G(torch.randn(B, Z)))).mean()
    opt_g.zero_grad(); loss_g.backward(inputs=list(G.parameters())); opt_g.step()
    monitor.step(step, real=real, fake=fake, d_real=d_real, d_fake=d_fake, loss_critic=loss_d,
                 loss_generator=loss_g, penalty_points={"r1": x}, penalty_grads={"r1": grad},
                 penalties={"r1": r1})
monitor.close()
diagnosis = probes.collapse.diagnose_run(run_dir)
tags = sorted({tag for line in open(f"{run_dir}/metrics.jsonl") for tag in json.loads(line)})
print(json.dumps({"verdict": diagnosis["verdict"], "tags": tags,
                  "stabgan": sorted(m for m in sys.modules
                                    if m == "stabgan" or m.startswith("stabgan."))}))
"""


def test_your_own_loop_with_monitor_guard_and_detector_loads_no_stabgan(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    result = subprocess.run([sys.executable, "-c", OWN_LOOP, str(tmp_path / "run")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["stabgan"] == []
    assert out["verdict"] in ("healthy", "unstable", "collapsed")
    for tag in ("critic/gap", "r1/norm_p50", "critic/r_t", "critic/d_real_mean",
                "spectra/g.0/sigma0", "diversity/pairwise"):
        assert tag in out["tags"]
    assert (tmp_path / "run" / "diagnosis.json").is_file()


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every module a file imports, at module level or inside a
    function (absolute imports, and importlib.import_module of a constant name)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
    return {name.split(".")[0] for name in names}


def test_no_package_imports_a_package_above_it():
    arrows = [f"{path.relative_to(ROOT)} imports {package}"
              for below, above in FORBIDDEN.items()
              for path in sorted((ROOT / below).rglob("*.py"))
              for package in sorted(imported_packages(path) & above)]
    assert arrows == []
    # the check itself sees the arrows the other way
    assert {"probes", "reports"} <= imported_packages(ROOT / "stabgan" / "cli.py")
