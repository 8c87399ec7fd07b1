"""Whether a whole message says "cancel" (取消, 算了, 不用了, 撤回, cancel, never mind).

A cancel is recognised before classification, deterministically, from a short closed list: the
classifier has no "cancel" and reads a bare 取消 as a request like any other. Only the whole
message counts. It may be a few cancel phrases with polite filler around them ("算了，不用了",
"不用了谢谢", "oh never mind, thanks"), but nothing else: "我想取消预约的体检" is a request
about an appointment, not a cancel of anything said here.

    >>> is_cancel("算了，不用了！"), is_cancel("撤銷"), is_cancel("Never mind 🙏")
    (True, True, True)
    >>> is_cancel("我想取消预约的体检"), is_cancel("谢谢")
    (False, False)
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from nlu.normalise import normalise

# Written as they read after `_compact`: Simplified script, lower case, no spaces or punctuation.
# zh-Hant needs no list of its own (撤銷, 不需要了 fold into these through OpenCC).
CANCEL_PHRASES = frozenset({
    # zh
    "取消", "算了", "不用了", "撤回", "撤销", "不要了", "不需要了", "没事了", "不办了",
    "我要取消", "我想取消", "帮我取消", "取消工单", "撤回工单", "撤销工单", "取消这个", "不用办了",
    # en
    "cancel", "cancelit", "cancelthat", "cancelthis", "nevermind", "forgetit", "withdraw",
    "withdrawit", "noneed", "notneeded", "nolongerneeded", "dontbother",
})
# Words that may stand around a cancel phrase without making the message about something else.
FILLER = frozenset({
    # zh
    "吧", "啦", "了", "啊", "呀", "哈", "嗯", "哦", "噢", "好", "好的", "那", "那就", "还是", "先",
    "谢谢", "多谢", "麻烦", "麻烦了", "请", "请帮我", "帮我", "抱歉", "不好意思", "对不起", "我",
    # en
    "oh", "ah", "ok", "okay", "please", "pls", "thanks", "thankyou", "sorry", "actually", "just",
    "all", "the", "request", "case", "my",
})
# Longer than this (after compaction) is not a bare cancel, whatever it is made of.
MAX_CHARS = 40


def _compact(text: str) -> str:
    """`text` in Simplified script and lower case with only its letters and digits: no spaces,
    punctuation, symbols or emoji."""
    return "".join(ch for ch in normalise(text) if unicodedata.category(ch)[0] in "LN")


@lru_cache(maxsize=1)
def _longest() -> int:
    return max(len(w) for w in CANCEL_PHRASES | FILLER)


def is_cancel(text: str) -> bool:
    """True when the whole message is a cancel: cancel phrases and filler only, at least one
    cancel phrase."""
    if len(text) > MAX_CHARS * 4:  # however much of it is spaces and emoji, it says more
        return False
    compact = _compact(text)
    if not compact or len(compact) > MAX_CHARS:
        return False
    # reach[i]: None when compact[:i] cannot be cut into known words, else whether a cancel
    # phrase is among the words.
    reach: list[bool | None] = [None] * (len(compact) + 1)
    reach[0] = False
    for start in range(len(compact)):
        if reach[start] is None:
            continue
        for end in range(start + 1, min(len(compact), start + _longest()) + 1):
            word = compact[start:end]
            if word in CANCEL_PHRASES:
                reach[end] = True
            elif word in FILLER and reach[end] is not True:
                reach[end] = bool(reach[start])
    return reach[-1] is True
