#!/usr/bin/python3
"""Check schemas/sandbox.schema.json against the loader's corpus with a real validator.

Usage: schema-check.py SCHEMA EXPECTED GOOD_DIR...

Every *.yaml in the GOOD_DIRs must validate. Every bad file that EXPECTED marks "reject"
must be refused by the schema; files marked "-" break rules of YAML itself that a schema
over parsed data cannot see, and are not even parsed here (billion-laughs among them).
The last line counts what was checked, for tests/test-schema.c to compare.
"""
import json
import os
import sys

import jsonschema
import yaml


def load(path):
    with open(path, "rb") as f:
        return yaml.safe_load(f)


def main():
    schema_path, expected_path, *good_dirs = sys.argv[1:]
    with open(schema_path) as f:
        schema = json.load(f)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)

    failures = good = bad = 0
    for d in good_dirs:
        for name in sorted(os.listdir(d)):
            if not name.endswith(".yaml"):
                continue
            path = os.path.join(d, name)
            errors = list(validator.iter_errors(load(path)))
            good += 1
            if errors:
                failures += 1
                print(f"FAIL good file refused: {path}: {errors[0].message}")

    reject = []
    with open(expected_path) as f:
        for line in f:
            if line.startswith("#"):
                continue
            name, _, _, schema_says, _ = line.rstrip("\n").split("\t")
            if schema_says == "reject" and name not in reject:
                reject.append(name)
    bad_dir = os.path.dirname(expected_path)
    for name in reject:
        path = os.path.join(bad_dir, name)
        bad += 1
        try:
            data = load(path)
        except yaml.YAMLError as e:
            failures += 1
            print(f"FAIL marked reject but not parsed by PyYAML: {path}: {e}")
            continue
        if validator.is_valid(data):
            failures += 1
            print(f"FAIL bad file accepted: {path}")

    print(f"schema: {good} good accepted, {bad} bad rejected, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
