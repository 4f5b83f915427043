"""The token API's problems, and the token system's errors mapped to them in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from producer.http.problems import NOT_FOUND, Problem, ProblemKind, invalid_field, redis_deadline
from producer.tokens.registry import MAX_TOKENS, TokenError, TokenLimitReached, TokenNotFound
from producer.tokens.twofactor import TwoFactorError, TwoFactorFailure
from producer.tokens.users import ResourceTaken, UserError, UserNotFound

REAUTHENTICATE = ProblemKind("reauthenticate", 401, "Re-authenticate with your second factor")
INVALID_CODE = ProblemKind("invalid-totp-code", 401, "TOTP code not accepted")
TOTP_LOCKED = ProblemKind("totp-locked", 429, "Too many wrong TOTP codes")
TWO_FACTOR_STATE = ProblemKind("two-factor-state", 409, "Second factor not ready for this")
TOKEN_LIMIT = ProblemKind("token-limit-reached", 409, "Webhook token limit reached")
RESOURCE_TAKEN = ProblemKind("resource-taken", 409, "Name owned by another user")

_TWO_FACTOR_KINDS = {
    TwoFactorFailure.NOT_ENROLLED: TWO_FACTOR_STATE,
    TwoFactorFailure.NOTHING_TO_CONFIRM: TWO_FACTOR_STATE,
    TwoFactorFailure.WRONG_CODE: INVALID_CODE,
    TwoFactorFailure.REPLAYED: INVALID_CODE,
    TwoFactorFailure.LOCKED: TOTP_LOCKED,
    TwoFactorFailure.SESSION_REQUIRED: REAUTHENTICATE,
}


@asynccontextmanager
async def token_errors(detail: str) -> AsyncIterator[None]:
    """Map the token system's errors to problems; 503 with ``detail`` when Redis fails."""
    try:
        async with redis_deadline(detail):
            yield
    except UserNotFound as exc:
        raise Problem(
            NOT_FOUND, f"No user {exc.user_id!r}: create it with PUT /v1/users/{{id}}."
        ) from None
    except TokenNotFound as exc:
        raise Problem(NOT_FOUND, f"The user has no token {exc.token_id!r}.") from None
    except (UserError, TokenError) as exc:
        raise invalid_field(exc.field, exc.message) from None
    except TokenLimitReached:
        raise Problem(
            TOKEN_LIMIT,
            f"A user can hold at most {MAX_TOKENS} webhook tokens: delete one first.",
        ) from None
    except ResourceTaken as exc:
        raise Problem(RESOURCE_TAKEN, str(exc).capitalize() + ".") from None
    except TwoFactorError as exc:
        raise Problem(_TWO_FACTOR_KINDS[exc.failure], exc.message) from None
