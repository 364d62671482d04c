"""The one error type that bad stack config raises: it names the key, the bad value and what would work."""

try:
    from pulumi import RunError as _Refusal
except ModuleNotFoundError:  # in the activator's function (activator/), which ships fleet/schedule.py without Pulumi
    _Refusal = Exception

PROJECT = "vllm-fleet"
# How a secret's value is shown, in errors as in the plan: never the value itself.
SHOWN_SECRET = "[secret]"


class ConfigError(_Refusal):
    """A RunError, so that `pulumi preview/up` prints the message alone, without a Python traceback."""

    def __init__(self, key: str, value: object, expected: str):
        self.key = key
        self.value = value
        self.expected = expected
        shown = "(not set)" if value is None else value if value == SHOWN_SECRET else repr(value)
        super().__init__(f"config {PROJECT}:{key} = {shown}: {expected}")
