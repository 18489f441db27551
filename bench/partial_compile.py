"""A captured step partly compiled against its Python replay, on the Numba backend: the
small and medium MLP steps with gk.sin after the first layer (no lowering: the calls
around it compile into functions of their own), and with tanh(h) * 0.5 + h there
instead (all compiled, the arithmetic fused). Prints ms per step (min of 7 repeats).

    PYTHONPATH=$PWD python bench/partial_compile.py
"""
import sys, timeit
import numpy as np, gradkit as gk
from gradkit.benchmarks.mlp import _data
from gradkit.nn import functional as F
def make(compiled, dims, batch, mid):
    weights, xh, lh = _data(dims, batch)
    ws=[gk.tensor(w, requires_grad=True) for w in weights]
    bs=[gk.zeros(w.shape[1], requires_grad=True) for w in weights]
    x, labels = gk.tensor(xh), gk.tensor(lh)
    opt = gk.optim.SGD(ws+bs, lr=0.05, momentum=0.9)
    @gk.capture(compile=compiled)
    def step(x, labels):
        h = gk.bias_activation(x @ ws[0], bs[0])
        h = mid(h)
        h = gk.bias_activation(h @ ws[1], bs[1])
        loss = F.cross_entropy(gk.linear(h, ws[2], bs[2]), labels)
        loss.backward(); opt.step(); opt.zero_grad()
        return loss
    for _ in range(3): step(x, labels)
    return step, x, labels
with gk.use_backend("numba"):
    for name, dims, batch in [("small", [64,64,64,10], 32), ("medium", [784,512,512,10], 128)]:
        for midname, mid in [("sin", gk.sin), ("tanh*0.5+x", lambda h: gk.tanh(h) * 0.5 + h)]:
            row = []
            for compiled in (False, True):
                step, x, l = make(compiled, dims, batch, mid)
                n = 200 if name == "small" else 20
                t = min(timeit.repeat(lambda: step(x, l), number=n, repeat=7)) / n * 1e3
                row.append(t)
                if compiled: expl = step.explain().splitlines()[0]
            print(f"{name:6s} {midname:11s} replay {row[0]:.3f} ms  compiled {row[1]:.3f} ms  ratio {row[1]/row[0]:.2f}  | {expl[:90]}")
