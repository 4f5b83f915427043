"""The README documents every setting and both of its commands."""

from cli.api_client import CLIENT_OPTIONS
from producer.http.state import API_OPTIONS
from producer.settings import PRODUCER_OPTIONS
from worker.settings import WORKER_OPTIONS

from support import PROJECT


def test_every_setting_is_in_the_readme_with_its_flag_and_default() -> None:
    readme = (PROJECT / "README.md").read_text()
    for option in PRODUCER_OPTIONS + API_OPTIONS + WORKER_OPTIONS + CLIENT_OPTIONS:
        row = next(
            (line for line in readme.splitlines() if line.startswith(f"| `{option.env}` |")), None
        )
        assert row is not None, f"{option.env} missing from the README's configuration table"
        assert f"`{option.flag}`" in row
        assert (f"`{option.default}`" if option.default else "(empty)") in row


def test_the_two_commands_are_near_the_top_and_ci_runs_the_test_command() -> None:
    head = (PROJECT / "README.md").read_text().splitlines()[:15]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)
    assert "make test" in (PROJECT / ".ci" / "run").read_text()
