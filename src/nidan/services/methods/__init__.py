"""The second-step methods the engine (``services/second_step.py``) knows, in the order a sign-in page offers them.

A new method is a module here implementing ``core.second_step.MethodPlugin`` and one line below (and its name in
``core.models.Method``); sign-in, step-up and the verify API take it from the engine without a change.
"""

from __future__ import annotations

from nidan.core.models import Method
from nidan.core.second_step import MethodPlugin
from nidan.services.context import ServiceContext
from nidan.services.methods.recovery_codes import RecoveryCodes
from nidan.services.methods.totp import AuthenticatorApp

PLUGINS: dict[Method, MethodPlugin[ServiceContext]] = {
    Method.TOTP: AuthenticatorApp(),
    Method.RECOVERY_CODE: RecoveryCodes(),
}
