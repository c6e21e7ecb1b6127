"""The one place where unexpected errors become CNI errors."""

import json

from cni_calico_py import main


def test_unexpected_exception_becomes_internal_error(monkeypatch, tmp_path):
    monkeypatch.setattr("cni_calico_py.core.logs.FALLBACK_LOG_DIR", str(tmp_path))

    def explode(_request):
        raise RuntimeError("boom")

    monkeypatch.setattr(main, "_handler_for", lambda program: explode)
    env = {"CNI_COMMAND": "STATUS"}
    code, payload = main.serve(env, json.dumps({"cniVersion": "1.1.0"}).encode(), "calico-py")
    assert code == 1
    assert payload is not None
    assert payload["code"] == 999
    assert "boom" in payload["msg"]
    assert str(tmp_path) in payload["details"]
    assert "Traceback" in (tmp_path / "internal-errors.log").read_text()


def test_error_is_written_in_the_requested_version():
    code, payload = main.serve({"CNI_COMMAND": "ADD"}, b'{"cniVersion": "0.4.0"}', "calico-py")
    assert code == 1 and payload is not None
    assert payload["cniVersion"] == "0.4.0" and payload["code"] == 4
