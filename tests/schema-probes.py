#!/usr/bin/python3
"""Check that vmd's loader and schemas/sandbox.schema.json give every probe its verdict.

Usage: schema-probes.py VMD SCHEMA PROBE_DIR

Each PROBE_DIR/*.yaml starts with "# expect: accept", "# expect: reject", or
"# expect: reject, loader only: WHY" for what a JSON Schema cannot say (the schema must
then accept it: if it learns to refuse it, the probe is to be updated). The loader's
verdict is `vmd validate`'s exit status; the schema's, a real validator's (Debian's
python3-jsonschema), which must accept the file under both readings the loader guards
against: YAML 1.2's core schema (what yaml-language-server, Go's yaml.v3 and ruamel
read: 0x10 and 010 are 16 and 10, yes and 1:20 strings) and YAML 1.1 (PyYAML's: yes a
boolean, 010 octal, 1:20 base 60). The last line counts what was checked, for
tests/test-schema.c to compare.
"""
import json
import math
import os
import re
import subprocess
import sys

import jsonschema
import yaml


class CoreLoader(yaml.SafeLoader):
    """YAML 1.2's core schema, which PyYAML (YAML 1.1) does not have."""


CoreLoader.yaml_implicit_resolvers = {}
for tag, regexp, first in (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$",
     list("-+0123456789")),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
     r"|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$", list("-+.0123456789")),
):
    CoreLoader.add_implicit_resolver(tag, re.compile(regexp), first)


def core_int(loader, node):
    v = loader.construct_scalar(node)
    return int(v, 0) if v.startswith(("0x", "0o")) else int(v, 10)


def core_float(loader, node):
    v = loader.construct_scalar(node).lower()
    if v.endswith(".inf"):
        return -math.inf if v.startswith("-") else math.inf
    return math.nan if v == ".nan" else float(v)


CoreLoader.add_constructor("tag:yaml.org,2002:int", core_int)
CoreLoader.add_constructor("tag:yaml.org,2002:float", core_float)


def main():
    vmd, schema_path, probe_dir = sys.argv[1:]
    with open(schema_path) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)

    checked = failures = 0
    for name in sorted(os.listdir(probe_dir)):
        if not name.endswith(".yaml"):
            continue
        path = os.path.join(probe_dir, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        m = re.match(r"# expect: (accept|reject)(, loader only: .+)?\n", text)
        if not m:
            print(f"FAIL {path}: no '# expect: accept|reject' first line")
            failures += 1
            continue
        want = m.group(1)
        schema_want = "accept" if m.group(2) else want
        run = subprocess.run([vmd, "validate", path], capture_output=True, text=True)
        if run.returncode not in (0, 1):
            print(f"FAIL {path}: vmd validate exited {run.returncode}: {run.stderr}")
            failures += 1
            continue
        loader = "accept" if run.returncode == 0 else "reject"
        errors = list(validator.iter_errors(yaml.load(text, Loader=CoreLoader)))
        errors += list(validator.iter_errors(yaml.safe_load(text)))
        schema_says = "reject" if errors else "accept"
        checked += 1
        if loader != want:
            failures += 1
            print(f"FAIL {name}: expected {want}, the loader says {loader}: {run.stderr.strip()}")
        if schema_says != schema_want:
            failures += 1
            why = errors[0].message if errors else "no error"
            print(f"FAIL {name}: expected {schema_want}, the schema says {schema_says}: {why}")
    print(f"probes: {checked} checked, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
