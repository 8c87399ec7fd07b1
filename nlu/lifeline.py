"""A curated lexicon of danger to life, read beside the urgent head so an emergency is not missed.

A linear head learns the words of its examples; a resident in danger writes words it has
never seen ("困了一个小时了🙏", "colapsed, not responding", a storm that "吹冧咗道牆"). The
lexicon names the hazards themselves, in Simplified Chinese (Traditional arrives converted by
OpenCC, Cantonese spellings are listed), and English, typos included:

    gas, fire and smoke, sparks and water reaching electrics, a person collapsed or not
    breathing, someone trapped, violence, a vulnerable person missing, a wall, ceiling or
    slope coming down, drowning and flooding.

A hazard named in a clause does not count when that clause also says it is not there
(`没有着火`, `there's no fire`), hypothetical or a topic (`怕起火`, `fire drill`,
`漏气检测`), or already over (`已经灭了`, `上周困过人`, `was put out`, `last year`); a whole
message that says all is well (`原来是邻居在炒菜，没事了`, `false alarm`) defuses every hazard in
it. Everything is one compiled alternation, so a message is scanned once.

    >>> scan("电梯停了，我们困了半个钟头了🙏").live
    ('trapped',)
    >>> scan("没有着火，就是楼下有人在烧纸").defused
    ('fire',)

`decide` combines the scan with the urgent head's probability (nlu/README.md, "Urgent").
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

# The regex parser, to read off the characters the Chinese patterns can start with.
_sre_c: Any = importlib.import_module("re._constants")
_sre_parse: Any = importlib.import_module("re._parser")

# --------------------------------------------------------------------------- the hazards

# Who counts as vulnerable when missing: children, the old, the ill.
_VULNERABLE_ZH = (r"(?:老人|老年痴呆|痴呆|失智|脑退化|认知障碍|自闭|智障|残疾|孩子|小孩|小朋友|儿子|女儿"
                  r"|细路|个仔|个女|奶奶|爷爷|外婆|外公|姥姥|阿嫲|阿爷|阿婆|老窦|老豆|阿伯|婆婆|伯伯"
                  r"|岁)")
_MISSING_ZH = (r"(?:走丢|走失|不见了|失踪|找不到|搵唔到|联系不上|没回来|没回家|未返|冇返|还没回"
               r"|打不通|唔通|没露面)")
_VULNERABLE_EN = (r"(?:son|daughter|child|kid|boy|girl|baby|toddler|year old|grand\w*|gran|mum|mom"
                  r"|mother|dad|father|elderly|old (?:man|lady|woman)|dementia|alzheimer\w*"
                  r"|autis\w*|disabled|neighbou?r)")
_MISSING_EN = (r"(?:missing|wandered off|wandering|can'?t find|cannot find|walked out|not come home"
               r"|hasn'?t (?:come|been) (?:home|back|seen)|not been seen|no one has seen"
               r"|left (?:the house|home) hours|isn'?t answering (?:her|his) phone)")
_STRUCTURE_ZH = r"(?:墙|天花|吊顶|屋顶|楼板|阳台|瓷砖|石屎|广告牌|招牌|树|电线杆|脚手架|棚|护栏|栏杆|围挡|围板)"
_FALLS_ZH = (r"(?:塌|倒了|倒塌|刮倒|吹倒|吹冧|冧|砸到|砸中|砸伤|掉下来|往下掉|快掉|跌落|要倒|快倒"
             r"|倾斜|剥落|脱落)")
_STRUCTURE_EN = (r"(?:wall|fence|concrete|ceiling|roof|balcony|railing|scaffold\w*|sign|billboard|tree|tiles?"
                 r"|facade|floor|chimney|pole)")
_FALLS_EN = (r"(?:collaps\w*|fell|fallen|falling|knocked down|blown down|came down|come down|caving"
             r"|about to fall|leaning|gave way|crashed)")
_ELECTRIC_ZH = r"(?:配电|电箱|电表|电闸|插座|插头|拖板|电线|电源)"
_ELECTRIC_EN = r"(?:fuse ?box|electrics|sockets?|electric meter|wiring|plugs?|power points?)"

HAZARDS: dict[str, list[str]] = {
    "gas": [
        r"(?:燃|煤|天然|液化)[气汽].{0,6}?(?:味|泄漏|泄露|外泄|漏)",
        r"瓦斯.{0,4}?(?:味|泄漏|泄露|外泄|漏)",
        r"漏(?:了)?(?:燃|煤)?[气汽](?!检|报警|测|费)",
        r"臭鸡蛋味",
        r"\bsmell(?:s|ing)? (?:of )?gas+\b", r"\bgas+ (?:smell|leak)", r"\bleaking gas",
        r"\bgas+ (?:is )?leaking", r"rotten eggs?",
    ],
    "fire": [
        (r"着(?<!打不着)(?<!打唔着)火|著火|起火|放火|纵火|点火烧|烧房子|火一直在烧|好多烟|失火|火烛|大火"
         r"|火很大|火越烧|烧起来|明火|火苗|浓烟|冒烟|冒黑烟|黑烟|全是烟|很多烟|烟很大|火灾(?!保险|演练|隐患|报警|知识)|焦糊味|烧焦|燶味|㶶味"),
        r"\bon fire\b", r"\bcaught fire\b", r"\bcatching fire\b", r"\bfire (?:in|at|on)\b",
        r"\bflames?\b", r"\bblaze\b", r"\bburning smell\b", r"\bsmell of burning\b",
        r"\bsmoke (?:is )?(?:coming|pouring|everywhere|billowing|filling)", r"\bfull of smoke\b",
        r"\bfire,? fire\b", r"\bthere'?s a fire\b", r"\bis burning\b", r"\barson\b", r"\bset fire\b",
        r"\b(?:box|meter|socket|plug|wires?|wiring|cupboard|charger|battery)\b.{0,20}\bsmoking\b",
    ],
    "electric": [
        r"火花|火星|漏电|触电|电到人",
        r"(?:高压线|电线|电缆).{0,4}(?:断|掉|落|冒)",
        r"(?:水|淹|浸).{0,8}" + _ELECTRIC_ZH,
        _ELECTRIC_ZH + r".{0,6}(?:进水|泡水|淹|浸|冒烟|着火|烧)",
        r"\bspark(?:s|ing)?\b", r"\belectrocuted\b", r"\blive wire", r"\bshock(?:ed)? by\b",
        r"\b(?:power ?lines?|cables?|wires?) (?:is |are )?(?:down|sparking|fell|fallen|on the (?:road|ground))",
        r"\b(?:water|flood\w*).{0,30}" + _ELECTRIC_EN, _ELECTRIC_EN + r".{0,20}\b(?:wet|water|flood\w*)",
    ],
    "collapse": [
        (r"晕倒|晕过去|昏倒|昏迷|昏过去|晕厥|晕低|瞓低|不省人事|叫不醒|叫不应|喊不醒|叫极都唔应|唔应"
        r"|没(?<!按没)(?<!按了没)反应|没有反应|无反应|冇反应|冇晒反应|没意识|没有意识|没知觉|冇晒知觉|冇知觉"
        r"|没呼吸|没有呼吸|没(?<!气没)气了|噎住|脸.{0,3}紫|说话.{0,2}含糊|手脚发麻|站不起来|流紧血|好多血|被车撞|撞倒"
        r"|(?:摔|跌|倒).{0,6}(?:起不来|起唔到身)|躺在.{0,10}不动|不呼吸|抽搐|口吐白沫|喘不上气|喘不过气|透不过气|抖唔到气|呼吸困难"
        r"|胸口(?:好)?(?:疼|痛)|心口(?:好)?痛|中风了|心脏病发|半边身|说不出话|讲唔到嘢|头破血流"
        r"|流血|出血|一动不动|倒在.{0,8}(?:门口|地上|路边|路上|楼梯)|叫.{0,2}不(?:答应|应)"),
        r"\bface (?:is )?drooping", r"\bcan'?t speak\b", r"\bslurr\w*", r"\bchest pain",
        r"\bbarely breathe", r"\bhit by a car\b",
        r"\bcolla?ps\w*", r"\bpass(?:ed|ing)? out\b", r"\bfaint(?:ed|ing)\b", r"\bunconscious\b",
        r"\b(?:not|isn'?t|is not) (?:responding|breathing|moving|waking)", r"\bwo?n'?t wake",
        r"\bcan'?t wake", r"\bunresponsive\b", r"\bno pulse\b", r"\bseizure\b", r"\bconvuls\w*",
        r"\bstroke\b", r"\bheart attack\b", r"\bcan'?t breathe", r"\bcannot breathe",
        r"\bstruggling to breathe", r"\bturning blue\b", r"\bchoking\b", r"\bbleeding\b",
        r"\bblood everywhere\b", r"\bhit (?:his|her|their|my) head\b", r"\bcan'?t get up\b",
        r"\bcannot get up\b", r"\boverdose\b",
    ],
    "trapped": [
        r"被困|困住|困在|困咗|困人|困电梯|困升降机|困了.{0,6}(?:小时|分钟|个钟|半天|好久)",
        r"(?:电梯|升降机).{0,8}(?:卡住|卡在|停住|停咗|停在|半空|关住|关着人|把人关|往下掉|困|出不来|门打不开)",
        r"卡在.{0,6}中间|关住了|被关|关在.{0,4}里面|关里面|入面有",
        r"\b(?:lift|elevator) stopped", r"\bstopped between floors",
        r"(?:锁|关)在.{0,2}车(?:里|内)",
        r"\btrapped\b", r"\bstuck in (?:the |a )?(?:lift|elevator)", r"\b(?:lift|elevator) (?:is |was )?stuck",
        r"\bstuck between floors", r"\blocked in (?:a |the |his |her )?(?:hot )?car", r"\bcan'?t get out\b",
    ],
    "violence": [
        (r"持刀|拿刀|拿着刀|揸刀|拎住刀|拎着刀|砍人|捅人|杀人|打人|打起来|打架|打交|打老婆|家暴|抢劫|打劫"
        r"|抢包|抢钱|闯进|闯入|撬|翻窗|爆格|小偷|进贼|入屋|见人就打|打(?:得)?(?:孩子|小孩|老人)"
        r"|陌生.{0,10}(?:跟|拧|门把)|救命|跳楼|要跳下|跳下去|轻生|自杀|砸车|砸窗|追打|行凶"),
        r"\bknives?\b", r"\bknife\b", r"\bgun\b", r"\bstabb\w*", r"\battack\w*", r"\bbeating\b",
        r"\bfight(?:ing)?\b", r"\bassault\w*", r"\bbreaking in", r"\bbroken into\b", r"\bbreak-in\b",
        r"\bintruder\b", r"\bburglar\w*", r"\brobb\w*", r"\bmugg\w*", r"\bthreaten\w*",
        r"\bscreaming for help\b", r"\bcall the police\b", r"\bsmashing\b", r"\bjump (?:off|from)\b",
        r"\bsuicid\w*", r"\bpick(?:ing)? (?:my|the) lock", r"\bbreak into\b", r"\bbroke (?:the |a )?(?:back |front )?(?:window|door)",
        r"\bkicking (?:my|the|our) door", r"\btrying (?:every |the )?door",
    ],
    "missing": [
        _VULNERABLE_ZH + r".{0,20}?" + _MISSING_ZH, _MISSING_ZH + r"的" + _VULNERABLE_ZH,
        r"(?:好|好多|好几|几|两|三)(?:天|日)没(?:开门|露面|出门|见到|见过|见人)",
        r"\b" + _VULNERABLE_EN + r"\b.{0,40}?" + _MISSING_EN, _MISSING_EN + r".{0,20}?\b" + _VULNERABLE_EN,
    ],
    "structure": [
        _STRUCTURE_ZH + r".{0,8}?" + _FALLS_ZH, r"(?:刮倒|吹倒|吹冧|推倒|冧)了?咗?.{0,3}" + _STRUCTURE_ZH,
        r"塌方|坍塌|倒塌|塌了|滑坡|山泥|泥石流|倾泻|山体|往下滑|滑下来|滑落",
        r"\blandslide\b", r"\bmudslide\b", r"\brockfall\b",
        r"\b" + _STRUCTURE_EN + r"\b.{0,30}?\b" + _FALLS_EN,
        r"\b(?:knocked|blown|blew|brought) (?:\w+ ){0,3}down\b", r"\bslid(?:ing|e)? down\b",
        r"\b(?:fell|falling|fallen|came down) (?:off|from) (?:the |a )?" + _STRUCTURE_EN,
        r"\b(?:almost|nearly) hit (?:someone|somebody|people|a child|a kid|me)\b",
    ],
    "water": [
        (r"溺水|落水|掉进.{0,3}(?:河|水|井|池|湖|海)|跌.{0,2}落(?:河|水|海)|掉下去"
        r"|淹了|淹水|水(?<!漏水)浸|进水了|水.{0,4}(?:往上)?涨|化粪池.{0,6}(?:冒|溢|泻)"),
        r"\bdrown\w*", r"\bfell (?:in|into) (?:the |a )?(?:canal|river|pond|lake|water|well|sea|manhole|pool)",
        r"\bflood\w*", r"\bwater (?:is )?(?:pouring|gushing|rising)",
    ],
    "distress": [r"🆘", r"\bsos\b"],
}

# --------------------------------------------------------------------------- what defuses them

# Just before a hazard (NEGATION_REACH characters): it is not there ("没有着火", "there's no
# fire"). "没人" and "no one" deny a person, not the hazard ("没人管，燃气味越来越重").
NEGATION = [
    r"不(?<!是不)是|并没|没有(?!人)|没(?!人)|冇(?!人)|无(?!人)|未|唔系|别担心",
    (r"\b(?:no(?! one)|not|isn'?t|wasn'?t|aren'?t|weren'?t|don'?t|doesn'?t|didn'?t|never|nothing"
    r"|without)\b"),
]
NEGATION_REACH = 6
# Before a hazard in its clause: it is feared, supposed or heard of ("怕起火", "if there's a
# fire"), not present; after it, "好怕" is fear of a present danger and defuses nothing.
HYPOTHETICAL = [
    r"怕|担心|万一|容易|会不会|如果|要是|假如|听说|据说|新闻|遇到",
    r"\b(?:if|in case|worried|afraid|heard|news)\b",
]
# Anywhere in its clause: the hazard is a topic ("消防演练", "漏气检测", "fire safety talk") or
# minor ("水浸少少", "floods a bit when it rains"), not a present danger.
TOPIC = [
    (r"演练|演习|培训|讲座|测试|检测|安检|隐患|保险|知识|少少|一点点|自保|手环|防走失|监控|预防|防止"
    r"|避免|以防"),
    (r"\b(?:drill|test|training|course|talk|safety|insurance|hazard|risk|a bit|a little|slightly"
    r"|every time|whenever|when it rains|class|rehab|cctv)\b"),
]
# Anywhere in its clause: the hazard is over, or was in the past.
OVER = [
    (r"已经?(?:灭|扑灭|熄灭|救熄|处理|解决|找到|恢复|救出|送医|送院|关好|关掉|排除|离开|修好)|修好|没事了"
    r"|现在好了|郁返|上个月|上周|上星期|上个星期|上个?礼拜|去年|旧年|昨天|昨晚|寻日|寻晚|前天|上次"
    r"|之前|以前|曾经|前几天|那次|年前|月前"),
    (r"\b(?:put out|(?:was|were|been|got|is|are|now|already) (?:fixed|repaired|sorted|resolved|cleared"
    r"|rescued|found|out)|all fine|fine now|ok now|okay now|back on|moving again|working again|anymore"
    r"|any more|no longer|tried to|last (?:night|week|month|year|time)|yesterday|earlier|(?:years?|months?|weeks?)"
    r" ago|previously|was just|safe now|over now)\b"),
]
# Anywhere in its clause: still going on, whatever else the clause says ("昨天开始，到现在还在").
STILL = [r"还在|仍在|仍然|一直|到现在|至今|仲喺|仲未|而家仲", r"\b(?:still|right now|keeps? getting)\b"]
# Anywhere in the message: all is well, every hazard in it is defused.
ALL_CLEAR = [
    (r"没事了|冇事了|虚惊|假警报|原来是|原来系|后来发现|没人受伤|没有人受伤|冇人受伤"
    r"|现在修好|而家修好|已经郁返|恢复正常"),
    (r"\b(?:all fine|false alarm|turned out|nobody (?:was )?hurt|no one (?:was )?hurt"
    r"|(?:is|was|been) fixed now|back to normal)\b"),
]
CLAUSE_BREAK = r"[，,。.!！?？;；\n]"

# The hazard groups first: at one position the first alternative that matches wins, so
# "没反应" is read as a hazard, not as the negation "没".
_GROUPS = [*HAZARDS.items(), ("neg", NEGATION), ("hypo", HYPOTHETICAL), ("topic", TOPIC),
           ("over", OVER), ("still", STILL), ("clear", ALL_CLEAR)]


def first_chars(items: Any) -> set[str] | None:
    """The characters a match of a parsed pattern can start with; None when any may (or when
    the pattern is of a form this does not follow)."""
    for op, av in items:
        if op is _sre_c.AT or (op in (_sre_c.ASSERT, _sre_c.ASSERT_NOT) and av[0] == -1):
            continue  # a boundary or a lookbehind: the next item consumes the first character
        if op is _sre_c.LITERAL:
            return {chr(av)}
        if op is _sre_c.IN:
            if not all(item_op is _sre_c.LITERAL for item_op, _ in av):
                return None
            return {chr(item) for _, item in av}
        if op is _sre_c.BRANCH:
            branches = [first_chars(branch) for branch in av[1]]
            return None if any(b is None for b in branches) else set().union(*branches)  # type: ignore[arg-type]
        if op is _sre_c.SUBPATTERN:
            return first_chars(av[-1])
        if op in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT) and av[0] >= 1:
            return first_chars(av[2])
        return None
    return None


NON_ASCII = "(?=[^\\x00-\\x7f])"


def _chinese_guard(parts: list[str]) -> str:
    """A lookahead for the characters the Chinese patterns can start with, or any non-ASCII."""
    chars: set[str] = set()
    for part in parts:
        first = first_chars(_sre_parse.parse(part))
        if first is None:
            return NON_ASCII
        chars |= first
    return "(?=[" + "".join(re.escape(c) for c in sorted(chars)) + "])"


def compile_lexicon(guarded: bool = True) -> re.Pattern[str]:
    """One alternation, in two halves that each position enters only if it can start there.

    Python's regex engine tries every branch at every position. The Chinese half is guarded by
    a lookahead for the characters its patterns start with (one in eight characters of a
    letter) and the English half by one shared word boundary, so most positions are passed over
    with one test instead of a few hundred: this makes the scan several times faster.
    `guarded=False` gives the same matches behind a plain non-ASCII lookahead (a test compares).
    """
    chinese, english, all_zh = [], [], []
    for name, parts in _GROUPS:
        zh = [part for part in parts if not part.isascii()]
        all_zh += zh
        en = [part.removeprefix(r"\b") for part in parts if part.isascii()]
        if zh:
            chinese.append(f"(?P<{name}_zh>{'|'.join(zh)})")
        if en:
            english.append(f"(?P<{name}_en>{'|'.join(en)})")
    return re.compile(f"(?P<brk>{CLAUSE_BREAK})"
                      f"|{_chinese_guard(all_zh) if guarded else NON_ASCII}(?:{'|'.join(chinese)})"
                      f"|\\b(?:{'|'.join(english)})")


PATTERN = compile_lexicon()
# Spaces residents put between Chinese characters ("着 火 了") are dropped before the scan.
_SPACED_HAN = re.compile(r"(?<=[\u3400-\u9fff]) (?=[\u3400-\u9fff])")


@dataclass(frozen=True)
class Risk:
    """The hazards a message names: `live` now, `defused` negated, hypothetical or over."""

    live: tuple[str, ...] = ()
    defused: tuple[str, ...] = ()


NO_RISK = Risk()

# The scan reads this many characters: a chat message whole, a letter's subject and opening.
# Someone in danger writes briefly; a letter's later pages are left to the urgent head, which
# reads 2,000 characters. The scan's cost grows with the text (about 0.3 ms for a 385-character
# letter against 0.03 ms for a chat message) and would otherwise halve the parse of letters.
SCAN_CHARS = 160


def scan(normalised: str) -> Risk:
    """The hazards in one message, as `nlu.normalise` gives it (Simplified, lower case)."""
    text = normalised[:SCAN_CHARS]
    text = _SPACED_HAN.sub("", text) if " " in text else text
    live: list[str] = []
    defused: list[str] = []
    clause: list[tuple[str, int]] = []  # (hazard, end) in the current clause
    negated_before: set[int] = set()   # indices in `clause` with a negation or supposition before
    neg_end = -NEGATION_REACH - 1
    hypo = topic = over = still = clear = False

    def close() -> None:
        for i, (hazard, end) in enumerate(clause):
            past = text[end:end + 1] == "过" and text[end + 1:end + 2] != "去"  # 困过, not 晕过去
            quiet = i in negated_before or topic or ((over or past) and not still)
            (defused if quiet else live).append(hazard)

    for match in PATTERN.finditer(text):
        group = (match.lastgroup or "").rpartition("_")[0] or match.lastgroup
        if group == "brk":
            close()
            clause, negated_before = [], set()
            neg_end = -NEGATION_REACH - 1
            hypo = topic = over = still = False
        elif group == "neg":
            neg_end = match.end()
        elif group == "hypo":
            hypo = True
        elif group == "topic":
            topic = True
        elif group == "over":
            over = True
        elif group == "still":
            still = True
        elif group == "clear":
            clear = True
        elif group is not None:
            if hypo or match.start() - neg_end <= NEGATION_REACH:
                negated_before.add(len(clause))
            clause.append((group, match.end()))
    close()
    if clear:
        live, defused = [], live + defused
    if not live and not defused:
        return NO_RISK
    return Risk(tuple(dict.fromkeys(live)), tuple(dict.fromkeys(defused)))


# --------------------------------------------------------------------------- the decision

# With no hazard named, the urgent head alone calls a message urgent from this probability.
# Chosen on the messages the lexicon is silent on, in the training data's out-of-fold
# probabilities and the held-out split (nlu/README.md, "Urgent"): 0.7 misses no more than 0.6
# there and raises fewer false alarms; 0.8 misses one more.
MODEL_ALONE_AT = 0.7
# A hazard named but negated or over: the head would have to be this sure to overrule the
# lexicon. Above 1, it never does: the head reads "燃气味 ... 没事了" as a gas leak.
MODEL_DEFUSED_AT = 1.01
# The confidence reported when a live hazard makes a message urgent that the head did not.
LEXICON_CONFIDENCE = 0.9


def decide(risk: Risk, p_urgent: float) -> tuple[bool, float]:
    """Urgent or not, and the confidence of that answer, from a scan and the head's P(urgent)."""
    if risk.live:
        return True, max(p_urgent, LEXICON_CONFIDENCE)
    threshold = MODEL_DEFUSED_AT if risk.defused else MODEL_ALONE_AT
    urgent = p_urgent >= threshold
    return urgent, (p_urgent if urgent else 1.0 - p_urgent)
