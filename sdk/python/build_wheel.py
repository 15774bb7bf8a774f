"""Builds crpc_worker-<version>-py3-none-any.whl from crpc_worker.py with the standard library
only (no setuptools, no network), so a package can ship it and install it offline.

    python3 sdk/python/build_wheel.py OUT_DIR
"""

import base64
import hashlib
import os
import re
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def main(out_dir):
    src = open(os.path.join(HERE, "crpc_worker.py"), "rb").read()
    version = re.search(rb'__version__ = "([^"]+)"', src).group(1).decode()
    dist = f"crpc_worker-{version}.dist-info"
    files = {
        "crpc_worker.py": src,
        f"{dist}/METADATA": (
            "Metadata-Version: 2.1\nName: crpc-worker\n"
            f"Version: {version}\nSummary: crpc native package helper\n"
        ).encode(),
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: crpc build_wheel.py\n"
            "Root-Is-Purelib: true\nTag: py3-none-any\n"
        ).encode(),
    }
    record = [record_line(n, d) for n, d in files.items()] + [f"{dist}/RECORD,,"]
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    os.makedirs(out_dir, exist_ok=True)
    # Only this version: a package installs every wheel it ships.
    for old in os.listdir(out_dir):
        if old.startswith("crpc_worker-") and old.endswith(".whl"):
            os.remove(os.path.join(out_dir, old))
    path = os.path.join(out_dir, f"crpc_worker-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    print(path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
