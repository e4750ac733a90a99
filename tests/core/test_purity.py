import subprocess
import sys


def test_core_imports_neither_torch_nor_simpy():
    code = ("import sys, nanosim.core, nanosim.config; "
            "bad = [m for m in ('torch', 'simpy', 'triton', 'pandas') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
