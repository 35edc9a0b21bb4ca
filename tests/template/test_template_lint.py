"""template.yaml passes cfn-lint, the same check `sam validate --lint` runs in `make build`."""

import subprocess
import sys

from support.template import ROOT, TEMPLATE_PATH

# The cfn-lint console script is exactly this; running it through sys.executable uses the
# cfn-lint installed next to the tests, wherever the venv's scripts live.
CFN_LINT = [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())"]


def test_cfn_lint_reports_nothing():
    # Given the template, when cfn-lint checks it with its default rules (errors and warnings)
    result = subprocess.run([*CFN_LINT, "--format", "parseable", "--", str(TEMPLATE_PATH)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)

    # Then it finds nothing at all
    assert result.stdout.strip() == "", result.stdout
    assert result.returncode == 0, result.stderr


def test_cfn_lint_fails_on_a_broken_template(tmp_path):
    # Given a template with a resource type that does not exist (proves the check can fail)
    broken = tmp_path / "broken.yaml"
    broken.write_text("Resources:\n  Thing:\n    Type: AWS::DynamoDB::Tabel\n")

    # When cfn-lint checks it
    result = subprocess.run([*CFN_LINT, "--format", "parseable", "--", str(broken)],
                            capture_output=True, text=True, timeout=120)

    # Then it reports an error
    assert result.returncode != 0
    assert "AWS::DynamoDB::Tabel" in result.stdout
