from synchro.client import ApiError, Gone, error_from_status


def test_status_bodies_become_typed_errors() -> None:
    gone = error_from_status(
        0, b'{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version"}'
    )
    assert isinstance(gone, Gone) and gone.reason == "Expired" and "too old" in gone.message
    http_gone = error_from_status(410, b'{"kind":"Status","code":410,"reason":"Gone","message":"x"}')
    assert isinstance(http_gone, Gone)
    denied = error_from_status(403, b'{"kind":"Status","code":403,"reason":"Forbidden","message":"no"}')
    assert type(denied) is ApiError and denied.code == 403 and str(denied) == "403 Forbidden: no"
    garbage = error_from_status(502, b"<html>bad gateway</html>")
    assert garbage.code == 502 and garbage.reason == "Bad Gateway" and "bad gateway" in garbage.message
