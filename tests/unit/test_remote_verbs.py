"""The helper's verb table names every verb its modules define, and only those."""

import importlib

from portal_tasks.remote import main


def test_verb_table_matches_the_modules():
    defined = {}
    for module in set(main.VERB_MODULES.values()):
        for verb in importlib.import_module(f"portal_tasks.remote.{module}").VERBS:
            defined[verb] = module
    assert defined == main.VERB_MODULES


def test_unknown_verb_is_one_json_line(capsys):
    try:
        main.main(["no-such-verb"])
    except SystemExit as exc:
        assert exc.code == 1
    assert '"ok": false' in capsys.readouterr().out
