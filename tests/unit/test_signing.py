import hashlib

from hypothesis import given
from hypothesis import strategies as st

from ihuyi_async._signing import Signer, getnum_password, key_digest, submit_password


def test_getnum_documented_example() -> None:
    # GetNum's worked example, attributed to the provider's API document by a secondary
    # source (unverified): md5(account + apikey + time).
    expected = hashlib.md5(b"test1q784322ba1d9bb88d50cf5cdfd89k7d1451544941").hexdigest()
    assert getnum_password("test", "1q784322ba1d9bb88d50cf5cdfd89k7d", 1451544941) == expected


def test_submit_order_and_utf8() -> None:
    content = "您的验证码是：1234。请不要把验证码泄露给其他人。"
    raw = ("APIID" + "KEY" + "13800138000" + content + "1700000000").encode("utf-8")
    assert submit_password("APIID", "KEY", "13800138000", content, 1700000000) == hashlib.md5(raw).hexdigest()


def test_key_digest_is_lowercase_md5() -> None:
    assert key_digest("KEY") == hashlib.md5(b"KEY").hexdigest()
    assert key_digest("KEY").islower() and len(key_digest("KEY")) == 32


@given(st.text(), st.text(), st.text(), st.text(), st.integers(0, 2**34))
def test_signer_matches_plain_functions(account: str, key: str, mobile: str, content: str, ts: int) -> None:
    signer = Signer(account, key)
    assert signer.submit(mobile, content, ts) == submit_password(account, key, mobile, content, ts)
    assert signer.getnum(ts) == getnum_password(account, key, ts)
    assert signer.key_digest == key_digest(key)


def test_signer_repr_hides_key() -> None:
    assert "SECRETKEY" not in repr(Signer("APIID", "SECRETKEY"))
