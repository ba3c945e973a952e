#!/usr/bin/env python3
"""Compares an Autobahn|Testsuite report with the expected results.

usage: compare.py [--update] INDEX_JSON EXPECTED_JSON

INDEX_JSON is the fuzzing client's index.json, shaped
{agent: {case_id: {"behavior", "behaviorClose", ...}}} with one agent.
EXPECTED_JSON maps each case id to its expected "behavior" and
"behaviorClose".

A case is a regression when it is missing from the report, or when its
behavior or behaviorClose is worse than expected (best first: OK, NON-STRICT,
INFORMATIONAL, UNIMPLEMENTED, FAILED; any other value counts as FAILED). A
regression fails the run even when the case still meets the target (behavior
OK, NON-STRICT or INFORMATIONAL; behaviorClose OK or INFORMATIONAL).
Improvements are printed, with a hint to update the file. Exit status: 0 when
nothing regressed, 1 on any regression, 2 on bad input.

With --update, EXPECTED_JSON is rewritten from INDEX_JSON instead.
"""

import json
import sys
from collections import Counter

RANK = {"OK": 4, "NON-STRICT": 3, "INFORMATIONAL": 2, "UNIMPLEMENTED": 1, "FAILED": 0}
ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
PASSING_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}
FIELDS = ("behavior", "behaviorClose")


def rank(value):
    return RANK.get(value, 0)


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def passes_target(result):
    return result["behavior"] in PASSING_BEHAVIOR and result["behaviorClose"] in PASSING_CLOSE


def load_report(path):
    with open(path) as f:
        index = json.load(f)
    if len(index) != 1:
        sys.exit("error: expected one agent in %s, found %s" % (path, sorted(index)))
    (results,) = index.values()
    return {case: {k: r[k] for k in FIELDS} for case, r in results.items()}


def describe(result):
    return "%s/%s" % (result["behavior"], result["behaviorClose"])


def summary(results):
    counts = Counter(r["behavior"] for r in results.values())
    names = ORDER + sorted(set(counts) - set(ORDER))
    parts = ["%d %s" % (counts[name], name) for name in names]
    close_bad = sum(1 for r in results.values() if r["behaviorClose"] not in PASSING_CLOSE)
    return "autobahn: %d cases: %s; closing behaviour not OK in %d" % (
        len(results),
        ", ".join(parts),
        close_bad,
    )


def update(report, expected_path):
    ordered = {case: report[case] for case in sorted(report, key=case_key)}
    # One line per case, in case order, so a change reads as a one-line diff.
    lines = [
        "  %s: %s" % (json.dumps(case), json.dumps(result, sort_keys=True))
        for case, result in ordered.items()
    ]
    with open(expected_path, "w") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")
    print(summary(report))
    below = [c for c in ordered if not passes_target(ordered[c])]
    for case in below:
        print("  note: %s is %s, below the target" % (case, describe(ordered[case])))
    print("wrote %s (%d cases)" % (expected_path, len(ordered)))
    return 0


def compare(report, expected):
    print(summary(report))
    regressions, improvements, notes = [], [], []
    for case in sorted(set(expected) | set(report), key=case_key):
        want, got = expected.get(case), report.get(case)
        if got is None:
            regressions.append("%s: missing from the report (expected %s)" % (case, describe(want)))
            continue
        if want is None:
            line = "%s: not in the expected results, got %s" % (case, describe(got))
            if passes_target(got):
                notes.append(line)
            else:
                regressions.append(line + " (below the target)")
            continue
        worse = [
            f
            for f in FIELDS
            if rank(got[f]) < rank(want[f]) or (rank(got[f]) == rank(want[f]) and got[f] != want[f])
        ]
        better = [f for f in FIELDS if rank(got[f]) > rank(want[f])]
        if worse:
            target = "meets the target" if passes_target(got) else "below the target"
            regressions.append(
                "%s: %s, expected %s (%s)" % (case, describe(got), describe(want), target)
            )
        elif better:
            improvements.append("%s: %s, expected %s" % (case, describe(got), describe(want)))
    for line in regressions:
        print("REGRESSION " + line)
    for line in improvements:
        print("improved   " + line)
    for line in notes:
        print("new case   " + line)
    if improvements or notes:
        print("(run `bash autobahn/run.sh --update` to record the new results)")
    if regressions:
        print("autobahn: %d regression(s)" % len(regressions))
        return 1
    print("autobahn: no regressions against %d expected cases" % len(expected))
    return 0


def main(argv):
    args = [a for a in argv if a != "--update"]
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    index_path, expected_path = args
    try:
        report = load_report(index_path)
    except (OSError, ValueError, KeyError) as err:
        print("error: cannot read the report %s: %s" % (index_path, err), file=sys.stderr)
        return 2
    if "--update" in argv:
        return update(report, expected_path)
    try:
        with open(expected_path) as f:
            expected = json.load(f)
    except (OSError, ValueError) as err:
        print("error: cannot read %s: %s" % (expected_path, err), file=sys.stderr)
        return 2
    return compare(report, expected)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
