import importlib

import pytest


@pytest.mark.parametrize(
    "name",
    ["ihuyi_async", "ihuyi_async.idempotency", "ihuyi_async.limiter", "ihuyi_async.pushes", "ihuyi_async.testing",
     "ihuyi_async.testing.faults", "ihuyi_async.verify"],
)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"


def test_library_does_not_import_testing_or_cli() -> None:
    import subprocess
    import sys

    code = ("import sys, ihuyi_async, ihuyi_async.idempotency, ihuyi_async.limiter, ihuyi_async.pushes;"
            "bad=[m for m in sys.modules if m.startswith(('ihuyi_async.testing', 'ihuyi_async._cli.')) or m == 'ihuyi_async._cli'];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_testing_exports_and_modules_by_concern() -> None:
    import ihuyi_async.testing as testing

    assert testing.__all__ == [
        "CHINA_TZ", "DEFAULT_ACCOUNTS", "Emulator", "EmulatorServer", "EmulatorTransport",
        "FakeClock", "Fault", "FaultPlan", "Limits", "Outbox", "PushAnswer", "PushRecord",
        "RecordedRequest", "SentMessage", "Template", "faults", "is_verification", "mock_ihuyi",
        "post_push", "receipt_form", "reply_form", "respx_side_effect", "template_review_form",
    ]
    for concern in ("_model", "_rules", "_http", "_outbox", "_inbox", "_server", "_wire"):
        importlib.import_module(f"ihuyi_async.testing.{concern}")
    with pytest.warns(DeprecationWarning, match="SentMessage"):
        renamed = testing.Message
    assert renamed is testing.SentMessage
    # testing.faults is a public module (so it has its own page in the API reference)
    faults = importlib.import_module("ihuyi_async.testing.faults")
    assert testing.faults is faults and faults.Fault is testing.Fault and faults.FaultPlan is testing.FaultPlan
    assert faults.http_error(503).status == 503


@pytest.mark.parametrize(
    "name", ["PushAnswer", "post_push", "receipt_form", "reply_form", "template_review_form"]
)
def test_push_builders_moved_to_testing_with_a_deprecation(name: str) -> None:
    import ihuyi_async.pushes as pushes
    import ihuyi_async.testing as testing

    assert name not in pushes.__all__
    with pytest.warns(DeprecationWarning, match=f"ihuyi_async.testing.{name}"):
        old = getattr(pushes, name)
    assert old is getattr(testing, name)


@pytest.mark.parametrize(
    "name",
    ["ihuyi_async", "ihuyi_async.idempotency", "ihuyi_async.limiter", "ihuyi_async.pushes", "ihuyi_async.testing",
     "ihuyi_async.verify"],
)
def test_exported_classes_say_where_users_import_them(name: str) -> None:
    import typing

    module = importlib.import_module(name)
    for attr in module.__all__:
        obj = getattr(module, attr)
        if typing.is_typeddict(obj):  # no instances to name it: it keeps its home (for pdoc)
            continue
        if isinstance(obj, type) and obj.__module__.startswith(name + "."):
            # defined in one of this package's modules: only a private one may be hidden
            assert not obj.__module__.startswith(name + "._"), f"{name}.{attr}: {obj.__module__}"
    # a class re-exported from elsewhere keeps its home
    if name == "ihuyi_async.testing":
        assert module.FakeClock.__module__ == "ihuyi_async"


@pytest.mark.parametrize(
    "name",
    ["ihuyi_async", "ihuyi_async.idempotency", "ihuyi_async.limiter", "ihuyi_async.pushes", "ihuyi_async.testing",
     "ihuyi_async.verify"],
)
def test_annotations_of_moved_classes_still_resolve(name: str) -> None:
    # The string annotations name things imported where the class is defined, not in the
    # package its __module__ now names: get_type_hints (and pdoc) must still evaluate them.
    import typing

    module = importlib.import_module(name)
    for attr in module.__all__:
        obj = getattr(module, attr)
        if isinstance(obj, type) and obj.__module__ == name:
            typing.get_type_hints(obj)  # raises NameError when an annotation does not resolve


def test_resolved_annotations_are_the_defining_modules_types() -> None:
    import dataclasses
    import datetime
    import inspect
    import pickle
    import typing

    import ihuyi_async
    from ihuyi_async.pushes import DeliveryReceipt

    hints = typing.get_type_hints(ihuyi_async.SendResult)
    assert hints["sent_at"] is datetime.datetime
    assert hints["segments"] == int | None
    assert typing.get_type_hints(DeliveryReceipt)["report_time"] == datetime.datetime | None
    assert typing.get_type_hints(DeliveryReceipt)["kind"] == typing.ClassVar[str]
    # dataclass machinery is untouched: fields keep their own record of the annotation
    assert [f.name for f in dataclasses.fields(ihuyi_async.SendResult)][:2] == ["smsid", "segments"]
    result = ihuyi_async.SendResult(smsid="1" * 20, segments=1, mobile="13800138000",
                                    sent_at=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc))
    assert pickle.loads(pickle.dumps(result)) == result
    assert b"ihuyi_async._models" not in pickle.dumps(result)  # pickles name the public home
    # the source of a moved class cannot be looked up by module: an error, never the wrong lines
    with pytest.raises(OSError):
        inspect.getsource(ihuyi_async.SendResult)
    assert "def __repr__" in inspect.getsource(ihuyi_async.SendResult.__repr__)


def test_product_options_and_rule_sets_are_public() -> None:
    # The README names them; they were reachable only as ihuyi_async._products.*.
    import typing

    import ihuyi_async
    from ihuyi_async.limiter import Rule

    for name in ("ProductOptions", "MARKETING_RULES", "VOICE_CODE_RULES", "VOICE_NOTICE_RULES",
                 "INTERNATIONAL_RULES", "OPT_OUT", "InvalidVoiceCodeError"):
        assert name in ihuyi_async.__all__, name
    assert typing.is_typeddict(ihuyi_async.ProductOptions)
    assert typing.get_type_hints(ihuyi_async.ProductOptions)["id_field"] == str | None
    for rules in (ihuyi_async.MARKETING_RULES, ihuyi_async.VOICE_CODE_RULES,
                  ihuyi_async.VOICE_NOTICE_RULES, ihuyi_async.INTERNATIONAL_RULES):
        assert rules and all(isinstance(rule, Rule) for rule in rules)
    assert issubclass(ihuyi_async.InvalidVoiceCodeError, ihuyi_async.InvalidRequestError)
