"""Build an independent speaker corpus from the speech-synthesis voices that Debian ships.

Every voice is made from one real person's recordings, so each is one speaker:

* MBROLA diphone databases (Debian ``contrib``: ``mbrola`` + ``mbrola-<id>``), driven by ``espeak-ng``
  (``main``) through its ``mb-<id>`` voices; about 70 of them, in about 30 languages.
* RHVoice statistical-parametric voices (Debian ``non-free``: ``rhvoice-<language>``), 34 voices of 32 people
  (Aleksandr / Aleksandr-hq and Evgeniy-Eng / Evgeniy-Rus are one person each and share a speaker id).

Nothing is installed on the system. A private apt configuration (its own sources list for the mirror the machine
already uses, with ``contrib`` and ``non-free`` added, and its own lists / cache folders) runs ``apt-get update`` and
``apt-get download``; each ``.deb`` is unpacked with ``dpkg -x`` into a cache folder. espeak-ng finds its data through
``ESPEAK_DATA_PATH`` and the MBROLA databases through ``<espeak-ng-data>/mbrola/<id>`` links; the ``mbrola`` binary
is found on ``PATH``. ``RHVoice-test`` has its data and config folders compiled in (``/usr/share/RHVoice``,
``/etc/RHVoice``), so RHVoice is driven through its C library (``libRHVoice.so.5``, ctypes, in a child process per
voice), which takes both folders as arguments.

Each utterance is random text in the voice's language (built-in word lists, numbers read by the synthesiser),
spoken at a slightly varied rate and pitch (per session, then per utterance), cut to 3-10 s at a pause, resampled to
16 kHz and passed through a random channel (EQ, band limits, additive noise at 5-30 dB SNR, sometimes synthetic
reverb; the project's own ``wavlmrawnet.synthetic.corpus`` channel model), so the channel does not identify the voice.

Output (VoxCeleb layout, 16 kHz mono 16-bit wav)::

    <out>/in_domain/train/wav/<speaker>/<video>/<utt>.wav    MBROLA voices, speaker-disjoint seeded split
    <out>/in_domain/test/wav/...  + trials.txt (+ trials_same_language.txt)
    <out>/cross_synth/test/wav/...  + trials.txt (+ trials_same_language.txt)   RHVoice voices
    <out>/<split>/metadata.jsonl   one JSON line per utterance (voice, text, rate, pitch, channel)
    <out>/build_report.json        voices used, voices that failed and why, sizes and timings

Trial paths are relative to the split's ``wav`` folder. The MBROLA voices may only be used non-commercially and
with the MBROLA program: the corpus is generated at benchmark time and must never be committed (see README.md).

    python benchmarks/corpora/debian_voices.py --out ~/.cache/wavlmrawnet/debian_voices
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# The project (wavlmrawnet) is imported inside the functions that need it: importing it loads torch and
# transformers, which the per-voice RHVoice child process (this file, run again) must not pay for.

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path("~/.cache/wavlmrawnet/debian_voices").expanduser()
DEFAULT_CACHE = Path("~/.cache/wavlmrawnet/debian_packages").expanduser()
SAMPLING_RATE = 16000
TRIALS_FILENAME = "trials.txt"
SAME_LANGUAGE_TRIALS_FILENAME = "trials_same_language.txt"
METADATA_FILENAME = "metadata.jsonl"
REPORT_FILENAME = "build_report.json"
SPLITS = {  # split name -> folder under --out
    "in_domain_train": "in_domain/train",
    "in_domain_test": "in_domain/test",
    "cross_synth_test": "cross_synth/test",
}
_SPLIT_CODES = {name: code for code, name in enumerate(SPLITS, start=1)}  # part of the trial seeds
_RHVOICE_WORKER_COMMAND = "_rhvoice-worker"
_MAX_ATTEMPTS = 3  # synthesis attempts per utterance, the text getting longer each time
_WORDS_PER_SECOND = 3.2  # rough speaking rate used to size the text (it is then cut to length)

# ---------------------------------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------------------------------
# 24 everyday words per language (house, river, morning, green, table, window, journey, people, water, garden,
# yellow, music, station, quickly, number, letter, market, summer, bright, family, village, open, evening, today).
WORDS: dict[str, tuple[str, ...]] = {
    "af": ("huis", "rivier", "oggend", "groen", "tafel", "venster", "reis", "mense", "water", "tuin", "geel",
           "musiek", "stasie", "vinnig", "nommer", "brief", "mark", "somer", "helder", "familie", "dorp", "oop",
           "aand", "vandag"),
    "ar": ("بيت", "نهر", "صباح", "أخضر", "طاولة", "نافذة", "رحلة", "ناس", "ماء", "حديقة", "أصفر", "موسيقى", "محطة",
           "بسرعة", "رقم", "رسالة", "سوق", "صيف", "مضيء", "عائلة", "قرية", "مفتوح", "مساء", "اليوم"),
    "cs": ("dům", "řeka", "ráno", "zelený", "stůl", "okno", "cesta", "lidé", "voda", "zahrada", "žlutý", "hudba",
           "nádraží", "rychle", "číslo", "dopis", "trh", "léto", "světlý", "rodina", "vesnice", "otevřený", "večer",
           "dnes"),
    "de": ("Haus", "Fluss", "Morgen", "grün", "Tisch", "Fenster", "Reise", "Menschen", "Wasser", "Garten", "gelb",
           "Musik", "Bahnhof", "schnell", "Nummer", "Brief", "Markt", "Sommer", "hell", "Familie", "Dorf", "offen",
           "Abend", "heute"),
    "el": ("σπίτι", "ποτάμι", "πρωί", "πράσινο", "τραπέζι", "παράθυρο", "ταξίδι", "άνθρωποι", "νερό", "κήπος",
           "κίτρινο", "μουσική", "σταθμός", "γρήγορα", "αριθμός", "γράμμα", "αγορά", "καλοκαίρι", "φωτεινό",
           "οικογένεια", "χωριό", "ανοιχτό", "βράδυ", "σήμερα"),
    "en": ("house", "river", "morning", "green", "table", "window", "journey", "people", "water", "garden",
           "yellow", "music", "station", "quickly", "number", "letter", "market", "summer", "bright", "family",
           "village", "open", "evening", "today"),
    "eo": ("domo", "rivero", "mateno", "verda", "tablo", "fenestro", "vojaĝo", "homoj", "akvo", "ĝardeno", "flava",
           "muziko", "stacidomo", "rapide", "numero", "letero", "bazaro", "somero", "hela", "familio", "vilaĝo",
           "malfermita", "vespero", "hodiaŭ"),
    "es": ("casa", "río", "mañana", "verde", "mesa", "ventana", "viaje", "gente", "agua", "jardín", "amarillo",
           "música", "estación", "rápido", "número", "carta", "mercado", "verano", "claro", "familia", "pueblo",
           "abierto", "noche", "hoy"),
    "et": ("maja", "jõgi", "hommik", "roheline", "laud", "aken", "reis", "inimesed", "vesi", "aed", "kollane",
           "muusika", "jaam", "kiiresti", "number", "kiri", "turg", "suvi", "hele", "perekond", "küla", "avatud",
           "õhtu", "täna"),
    "fa": ("خانه", "رودخانه", "صبح", "سبز", "میز", "پنجره", "سفر", "مردم", "آب", "باغ", "زرد", "موسیقی", "ایستگاه",
           "سریع", "شماره", "نامه", "بازار", "تابستان", "روشن", "خانواده", "روستا", "باز", "شب", "امروز"),
    "fr": ("maison", "rivière", "matin", "vert", "table", "fenêtre", "voyage", "gens", "eau", "jardin", "jaune",
           "musique", "gare", "vite", "numéro", "lettre", "marché", "été", "clair", "famille", "village", "ouvert",
           "soir", "aujourd'hui"),
    "he": ("בית", "נהר", "בוקר", "ירוק", "שולחן", "חלון", "נסיעה", "אנשים", "מים", "גן", "צהוב", "מוזיקה", "תחנה",
           "מהר", "מספר", "מכתב", "שוק", "קיץ", "בהיר", "משפחה", "כפר", "פתוח", "ערב", "היום"),
    "hi": ("घर", "नदी", "सुबह", "हरा", "मेज़", "खिड़की", "यात्रा", "लोग", "पानी", "बगीचा", "पीला", "संगीत", "स्टेशन",
           "जल्दी", "संख्या", "पत्र", "बाज़ार", "गर्मी", "उजला", "परिवार", "गाँव", "खुला", "शाम", "आज"),
    "hr": ("kuća", "rijeka", "jutro", "zelen", "stol", "prozor", "putovanje", "ljudi", "voda", "vrt", "žut",
           "glazba", "kolodvor", "brzo", "broj", "pismo", "tržnica", "ljeto", "svijetao", "obitelj", "selo", "otvoren",
           "večer", "danas"),
    "hu": ("ház", "folyó", "reggel", "zöld", "asztal", "ablak", "utazás", "emberek", "víz", "kert", "sárga", "zene",
           "állomás", "gyorsan", "szám", "levél", "piac", "nyár", "világos", "család", "falu", "nyitva", "este", "ma"),
    "id": ("rumah", "sungai", "pagi", "hijau", "meja", "jendela", "perjalanan", "orang", "air", "kebun", "kuning",
           "musik", "stasiun", "cepat", "nomor", "surat", "pasar", "musim", "terang", "keluarga", "desa", "buka",
           "malam", "hari ini"),
    "is": ("hús", "á", "morgunn", "grænn", "borð", "gluggi", "ferð", "fólk", "vatn", "garður", "gulur", "tónlist",
           "stöð", "fljótt", "númer", "bréf", "markaður", "sumar", "bjartur", "fjölskylda", "þorp", "opinn", "kvöld",
           "í dag"),
    "it": ("casa", "fiume", "mattina", "verde", "tavolo", "finestra", "viaggio", "gente", "acqua", "giardino",
           "giallo", "musica", "stazione", "veloce", "numero", "lettera", "mercato", "estate", "chiaro", "famiglia",
           "paese", "aperto", "sera", "oggi"),
    "ja": ("いえ", "かわ", "あさ", "みどり", "つくえ", "まど", "りょこう", "ひとびと", "みず", "にわ", "きいろ", "おんがく",
           "えき", "はやく", "ばんごう", "てがみ", "いちば", "なつ", "あかるい", "かぞく", "むら", "あいている", "ゆうがた",
           "きょう"),
    "ky": ("үй", "дарыя", "таң", "жашыл", "стол", "терезе", "саякат", "адамдар", "суу", "бак", "сары", "музыка",
           "бекет", "тез", "номер", "кат", "базар", "жай", "жарык", "үй-бүлө", "айыл", "ачык", "кеч", "бүгүн"),
    "la": ("domus", "flumen", "mane", "viridis", "mensa", "fenestra", "iter", "homines", "aqua", "hortus", "flavus",
           "musica", "via", "celeriter", "numerus", "epistula", "forum", "aestas", "clarus", "familia", "vicus",
           "apertus", "vesper", "hodie"),
    "lt": ("namas", "upė", "rytas", "žalias", "stalas", "langas", "kelionė", "žmonės", "vanduo", "sodas",
           "geltonas", "muzika", "stotis", "greitai", "numeris", "laiškas", "turgus", "vasara", "šviesus", "šeima",
           "kaimas", "atviras", "vakaras", "šiandien"),
    "mi": ("whare", "awa", "ata", "kākāriki", "tēpu", "matapihi", "haerenga", "tāngata", "wai", "māra", "kōwhai",
           "waiata", "teihana", "tere", "nama", "reta", "mākete", "raumati", "mārama", "whānau", "kāinga", "tuwhera",
           "ahiahi", "tēnei rā"),
    "mk": ("куќа", "река", "утро", "зелен", "маса", "прозорец", "патување", "луѓе", "вода", "градина", "жолт",
           "музика", "станица", "брзо", "број", "писмо", "пазар", "лето", "светол", "семејство", "село", "отворен",
           "вечер", "денес"),
    "ms": ("rumah", "sungai", "pagi", "hijau", "meja", "tingkap", "perjalanan", "orang", "air", "taman", "kuning",
           "muzik", "stesen", "cepat", "nombor", "surat", "pasar", "musim", "terang", "keluarga", "kampung", "buka",
           "malam", "hari ini"),
    "nl": ("huis", "rivier", "morgen", "groen", "tafel", "raam", "reis", "mensen", "water", "tuin", "geel", "muziek",
           "station", "snel", "nummer", "brief", "markt", "zomer", "helder", "familie", "dorp", "open", "avond",
           "vandaag"),
    "pl": ("dom", "rzeka", "rano", "zielony", "stół", "okno", "podróż", "ludzie", "woda", "ogród", "żółty",
           "muzyka", "dworzec", "szybko", "numer", "list", "rynek", "lato", "jasny", "rodzina", "wieś", "otwarty",
           "wieczór", "dzisiaj"),
    "pt": ("casa", "rio", "manhã", "verde", "mesa", "janela", "viagem", "pessoas", "água", "jardim", "amarelo",
           "música", "estação", "rápido", "número", "carta", "mercado", "verão", "claro", "família", "aldeia",
           "aberto", "noite", "hoje"),
    "ro": ("casă", "râu", "dimineață", "verde", "masă", "fereastră", "călătorie", "oameni", "apă", "grădină",
           "galben", "muzică", "gară", "repede", "număr", "scrisoare", "piață", "vară", "luminos", "familie", "sat",
           "deschis", "seară", "astăzi"),
    "ru": ("дом", "река", "утро", "зелёный", "стол", "окно", "путешествие", "люди", "вода", "сад", "жёлтый",
           "музыка", "вокзал", "быстро", "номер", "письмо", "рынок", "лето", "светлый", "семья", "деревня",
           "открытый", "вечер", "сегодня"),
    "sq": ("shtëpi", "lumë", "mëngjes", "jeshil", "tavolinë", "dritare", "udhëtim", "njerëz", "ujë", "kopsht",
           "i verdhë", "muzikë", "stacion", "shpejt", "numër", "letër", "treg", "verë", "i ndritshëm", "familje",
           "fshat", "i hapur", "mbrëmje", "sot"),
    "sv": ("hus", "flod", "morgon", "grön", "bord", "fönster", "resa", "människor", "vatten", "trädgård", "gul",
           "musik", "station", "snabbt", "nummer", "brev", "torg", "sommar", "ljus", "familj", "by", "öppen", "kväll",
           "idag"),
    "te": ("ఇల్లు", "నది", "ఉదయం", "ఆకుపచ్చ", "బల్ల", "కిటికీ", "ప్రయాణం", "ప్రజలు", "నీరు", "తోట", "పసుపు", "సంగీతం",
           "స్టేషన్", "త్వరగా", "సంఖ్య", "ఉత్తరం", "సంత", "వేసవి", "వెలుగు", "కుటుంబం", "గ్రామం", "తెరిచి", "సాయంత్రం",
           "ఈరోజు"),
    "tr": ("ev", "nehir", "sabah", "yeşil", "masa", "pencere", "yolculuk", "insanlar", "su", "bahçe", "sarı", "müzik",
           "istasyon", "hızlı", "numara", "mektup", "pazar", "yaz", "parlak", "aile", "köy", "açık", "akşam", "bugün"),
    "tt": ("өй", "елга", "иртә", "яшел", "өстәл", "тәрәзә", "сәяхәт", "кешеләр", "су", "бакча", "сары", "музыка",
           "вокзал", "тиз", "номер", "хат", "базар", "җәй", "якты", "гаилә", "авыл", "ачык", "кич", "бүген"),
    "uk": ("дім", "річка", "ранок", "зелений", "стіл", "вікно", "подорож", "люди", "вода", "сад", "жовтий", "музика",
           "вокзал", "швидко", "номер", "лист", "ринок", "літо", "світлий", "родина", "село", "відкритий", "вечір",
           "сьогодні"),
    "zh": ("房子", "河", "早上", "绿色", "桌子", "窗户", "旅行", "人们", "水", "花园", "黄色", "音乐", "车站", "很快", "号码",
           "信", "市场", "夏天", "明亮", "家庭", "村子", "开着", "晚上", "今天"),
}
# RHVoice's language names and espeak-ng codes that are not the word-list key.
_LANGUAGE_ALIASES = {
    "albanian": "sq", "brazilian-portuguese": "pt", "english": "en", "esperanto": "eo", "kyrgyz": "ky",
    "macedonian": "mk", "polish": "pl", "russian": "ru", "tatar": "tt", "ukrainian": "uk", "cmn": "zh",
}
_NUMBER_SHARE = 0.25  # fraction of tokens that are numbers (the synthesiser reads them in its language)


def base_language(code: str) -> str:
    """The word-list key of an espeak-ng language code (``en-uk`` -> ``en``) or RHVoice language name."""
    key = code.strip().lower()
    key = _LANGUAGE_ALIASES.get(key, key)
    key = _LANGUAGE_ALIASES.get(key.split("-")[0], key.split("-")[0])
    if key not in WORDS:
        raise ValueError(f"no built-in word list for language {code!r} (known: {', '.join(sorted(WORDS))})")
    return key


def _number_token(rng: np.random.Generator) -> str:
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return str(int(rng.integers(0, 100)))
    if kind == 1:
        return str(int(rng.integers(100, 10000)))
    if kind == 2:
        return str(int(rng.integers(1900, 2031)))  # a year
    return " ".join(str(int(d)) for d in rng.integers(0, 10, size=int(rng.integers(3, 6))))  # digit by digit


def make_text(language: str, num_tokens: int, rng: np.random.Generator) -> str:
    """Sentences of 4-9 tokens (words of ``language``, about a quarter numbers), ``num_tokens`` tokens in all."""
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
    words = WORDS[base_language(language)]
    sentences = []
    remaining = num_tokens
    while remaining > 0:
        count = min(remaining, int(rng.integers(4, 10)))
        tokens = [_number_token(rng) if rng.random() < _NUMBER_SHARE else str(rng.choice(words)) for _ in range(count)]
        if count > 3 and rng.random() < 0.4:
            comma = int(rng.integers(1, count - 1))
            tokens[comma] += ","
        sentence = " ".join(tokens)
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
        remaining -= count
    return " ".join(sentences)


# ---------------------------------------------------------------------------------------------------------------------
# Voices, plans, audio
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Voice:
    """One synthesiser voice. ``speaker`` names the real person (one folder in the corpus)."""

    engine: str  # "mbrola" or "rhvoice" (which synthesiser speaks it)
    name: str  # what the synthesiser is given: espeak-ng voice ("mb-en1") or RHVoice profile ("Slt")
    speaker: str  # speaker id (folder name), e.g. "mbrola-en1", "rhvoice-evgeniy"
    language: str  # language of the text, e.g. "en-uk", "Russian"
    gender: str  # "male", "female" or "unknown"
    package: str  # Debian package holding the voice data

    @property
    def key(self) -> str:
        return f"{self.engine}/{self.name}"


@dataclass(frozen=True)
class UtterancePlan:
    """Everything decided about one utterance before synthesis."""

    speaker: str
    video: str
    relative_path: str  # <speaker>/<video>/<nnnnn>.wav, relative to the split's wav folder
    text: str
    rate: float  # speaking-rate factor (1 = the synthesiser's default); planned within 0.85-1.16
    pitch: float  # pitch shift in [-1, 1] (0 = default); planned within +-0.2
    target_seconds: float  # the utterance is at most this long
    lead_seconds: float  # silence before the speech
    tail_seconds: float  # silence after it


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    rate: float
    pitch: float


class SynthesisError(RuntimeError):
    """A voice could not be synthesised; the message says why."""


# A synthesiser turns one voice's requests into (samples, sampling rate) pairs, one per request, in order.
Synthesizer = Callable[[Voice, Sequence[SynthesisRequest]], list[tuple[np.ndarray, int]]]


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if not slug:
        raise ValueError(f"cannot make a file-name id from {text!r}")
    return slug


def _tokens_for(seconds: float) -> int:
    return int(math.ceil(seconds * _WORDS_PER_SECOND * 1.25)) + 2


def plan_voice(
    voice: Voice,
    num_utterances: int,
    num_videos: int,
    min_seconds: float,
    max_seconds: float,
    rng: np.random.Generator,
    video_prefix: str = "",
) -> list[UtterancePlan]:
    """The utterances of one voice: texts, rates, pitches and lengths, grouped into ``num_videos`` sessions.

    Each session (video) has its own rate and pitch offset; utterances vary a little around it.
    """
    if num_utterances < max(2, num_videos) or num_videos < 1:
        raise ValueError(
            f"need num_videos >= 1 and num_utterances >= max(2, num_videos), got {num_utterances} utterances, "
            f"{num_videos} videos"
        )
    plans = []
    for video_index, indices in enumerate(np.array_split(np.arange(num_utterances), num_videos)):
        video = f"{video_prefix}s{video_index + 1:02d}"
        session_rate = rng.uniform(0.9, 1.1)
        session_pitch = rng.uniform(-0.15, 0.15)
        for number in range(1, len(indices) + 1):
            target = float(rng.uniform(min_seconds, max_seconds))
            lead, tail = (float(x) for x in rng.uniform(0.05, 0.3, size=2) * min(1.0, min_seconds / 3.0))
            plans.append(
                UtterancePlan(
                    speaker=voice.speaker,
                    video=video,
                    relative_path=f"{voice.speaker}/{video}/{number:05d}.wav",
                    text=make_text(voice.language, _tokens_for(target), rng),
                    rate=float(session_rate * rng.uniform(0.95, 1.05)),
                    pitch=float(session_pitch + rng.uniform(-0.05, 0.05)),
                    target_seconds=target,
                    lead_seconds=lead,
                    tail_seconds=tail,
                )
            )
    return plans


def to_mono_16k(samples: np.ndarray, sampling_rate: int) -> np.ndarray:
    """float64 mono at 16 kHz (soxr), with clear errors for empty, non-finite or silent audio."""
    audio = np.asarray(samples)
    if audio.dtype.kind in "iu":
        audio = audio.astype(np.float64) / float(np.iinfo(audio.dtype).max)
    audio = audio.astype(np.float64)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.ndim != 1 or audio.size == 0:
        raise SynthesisError(f"the synthesiser returned no audio (shape {audio.shape})")
    if not np.isfinite(audio).all():
        raise SynthesisError("the synthesiser returned NaN or infinite samples")
    if float(np.max(np.abs(audio))) < 1e-4:
        raise SynthesisError("the synthesiser returned silence")
    if sampling_rate != SAMPLING_RATE:
        audio = soxr.resample(audio, sampling_rate, SAMPLING_RATE, quality="HQ")
    return audio


def _frame_rms(audio: np.ndarray, frame: int) -> np.ndarray:
    usable = len(audio) // frame * frame
    return np.sqrt(np.mean(audio[:usable].reshape(-1, frame) ** 2, axis=1) + 1e-20)


def trim_silence(audio: np.ndarray, sampling_rate: int, threshold_db: float = -40.0) -> np.ndarray:
    """``audio`` from its first to its last 20 ms frame within ``threshold_db`` of the loudest (50 ms margins)."""
    frame = sampling_rate // 50
    rms = _frame_rms(audio, frame)
    if rms.size == 0:
        return audio
    active = np.flatnonzero(rms >= rms.max() * 10 ** (threshold_db / 20))
    margin = sampling_rate // 20
    start = max(0, active[0] * frame - margin)
    stop = min(len(audio), (active[-1] + 1) * frame + margin)
    return audio[start:stop]


def cut_at_pause(audio: np.ndarray, sampling_rate: int, max_seconds: float, min_seconds: float) -> np.ndarray:
    """``audio`` cut to at most ``max_seconds`` at its quietest 20 ms frame in the last second before that point
    (not before ``min_seconds``), with a 10 ms fade-out. Shorter audio is returned unchanged."""
    limit = int(max_seconds * sampling_rate)
    if len(audio) <= limit:
        return audio
    frame = sampling_rate // 50
    first = int(max(min_seconds, max_seconds - 1.0) * sampling_rate) // frame
    last = limit // frame  # frames [first, last) end at or before the limit
    if last <= first:
        cut = limit
    else:
        rms = _frame_rms(audio[: last * frame], frame)[first:last]
        cut = (first + int(np.argmin(rms)) + 1) * frame
    out = audio[:cut].copy()
    fade = min(len(out), sampling_rate // 100)
    out[len(out) - fade :] *= np.linspace(1.0, 0.0, fade)
    return out


def apply_random_channel(speech: np.ndarray, sampling_rate: int, rng: np.random.Generator):
    """``speech`` through a random recording channel (EQ and band limits, reverb 30% of the time, additive
    noise at 5-30 dB SNR, random level; peaks <= 0.95). Returns ``(audio, ChannelParams)``.

    This is the project's own channel model (``wavlmrawnet.synthetic.corpus.draw_channel`` / ``apply_channel``).
    """
    from wavlmrawnet.synthetic.corpus import apply_channel, draw_channel

    channel = draw_channel(rng, sampling_rate)
    return apply_channel(speech, channel, sampling_rate, rng), channel


def render_voice(
    voice: Voice,
    plans: Sequence[UtterancePlan],
    synthesize: Synthesizer,
    rng: np.random.Generator,
    min_seconds: float,
) -> list[tuple[UtterancePlan, np.ndarray, dict]]:
    """Synthesise, cut, pad and pass through a channel every planned utterance of ``voice``, in memory.

    An utterance shorter than it needs to be is synthesised again with more text (up to 3 attempts).
    Returns ``(plan, 16 kHz audio, metadata)`` per utterance; raises SynthesisError with the reason otherwise.
    """
    texts = [plan.text for plan in plans]
    speech: list[np.ndarray | None] = [None] * len(plans)
    pending = list(range(len(plans)))
    shortest = {}
    for attempt in range(_MAX_ATTEMPTS):
        requests = [SynthesisRequest(texts[i], plans[i].rate, plans[i].pitch) for i in pending]
        results = synthesize(voice, requests)
        if len(results) != len(requests):
            raise SynthesisError(f"the synthesiser returned {len(results)} results for {len(requests)} requests")
        still_short = []
        for i, (samples, rate) in zip(pending, results):
            plan = plans[i]
            audio = trim_silence(to_mono_16k(samples, rate), SAMPLING_RATE)
            room = plan.target_seconds - plan.lead_seconds - plan.tail_seconds
            needed = max(min_seconds - plan.lead_seconds - plan.tail_seconds, 0.2)
            seconds = len(audio) / SAMPLING_RATE
            if seconds >= needed:
                speech[i] = cut_at_pause(audio, SAMPLING_RATE, room, needed)
            else:
                shortest[i] = (seconds, len(texts[i].split()))
                texts[i] += " " + make_text(voice.language, _tokens_for(plan.target_seconds) * (attempt + 1), rng)
                still_short.append(i)
        pending = still_short
        if not pending:
            break
    if pending:
        seconds, words = min(shortest[i] for i in pending)
        raise SynthesisError(
            f"{len(pending)} of {len(plans)} utterances stayed shorter than {min_seconds} s after {_MAX_ATTEMPTS} "
            f"attempts with ever longer text (e.g. {words} words gave {seconds:.2f} s of speech); the synthesiser "
            f"may not read this language's text"
        )
    rendered = []
    for plan, text, audio in zip(plans, texts, speech):
        lead = np.zeros(round(plan.lead_seconds * SAMPLING_RATE))
        tail = np.zeros(round(plan.tail_seconds * SAMPLING_RATE))
        mixed, channel = apply_random_channel(np.concatenate([lead, audio, tail]), SAMPLING_RATE, rng)
        meta = {
            "text": text,
            "rate": round(plan.rate, 4),
            "pitch": round(plan.pitch, 4),
            "seconds": round(len(mixed) / SAMPLING_RATE, 3),
            **{f"channel_{k}": v for k, v in asdict(channel).items()},
        }
        rendered.append((plan, mixed, meta))
    return rendered


def write_voice(
    voice: Voice,
    plans: Sequence[UtterancePlan],
    wav_dir: str | os.PathLike,
    synthesize: Synthesizer,
    rng: np.random.Generator,
    min_seconds: float,
    split: str = "",
) -> list[dict]:
    """Render ``voice`` (see render_voice) and write ``<wav_dir>/<speaker>/<video>/<nnnnn>.wav`` (16 kHz mono
    PCM-16). Nothing is written unless every utterance succeeded. Returns one metadata row per file."""
    rendered = render_voice(voice, plans, synthesize, rng, min_seconds)
    wav_dir = Path(wav_dir)
    written: list[Path] = []
    rows = []
    try:
        for plan, audio, meta in rendered:
            path = wav_dir / plan.relative_path
            if path.exists():
                raise FileExistsError(f"{path} already exists (two voices planned the same file)")
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), audio, SAMPLING_RATE, subtype="PCM_16")
            written.append(path)
            rows.append(
                {
                    "split": split,
                    "path": plan.relative_path,
                    "speaker": plan.speaker,
                    "video": plan.video,
                    "engine": voice.engine,
                    "voice": voice.name,
                    "language": voice.language,
                    "gender": voice.gender,
                    "package": voice.package,
                    **meta,
                }
            )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# Splits and trials
# ---------------------------------------------------------------------------------------------------------------------
def split_speakers(speakers: Iterable[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded speaker-disjoint ``(train, test)`` split: ``round(test_fraction * n)`` test speakers, at least 2
    (non-target trials need two) and at least 1 train speaker. Both lists are sorted."""
    unique = sorted(set(speakers))
    if len(unique) < 3:
        raise ValueError(f"a train/test split needs at least 3 speakers, got {len(unique)}: {unique}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    num_test = min(max(2, round(test_fraction * len(unique))), len(unique) - 1)
    order = np.random.default_rng(np.random.SeedSequence([seed, 31])).permutation(len(unique))
    test = sorted(unique[i] for i in order[:num_test])
    train = sorted(unique[i] for i in order[num_test:])
    return train, test


def trial_pool_sizes(utterances) -> tuple[int, int]:
    """``(target, non-target)`` pairs that ``wavlmrawnet.synthetic.corpus.build_trials`` can draw from: target pairs
    are across videos of a speaker (any two utterances if the speaker has a single video)."""
    by_speaker: dict[str, dict[str, int]] = {}
    for u in utterances:
        videos = by_speaker.setdefault(u.speaker, {})
        videos[u.video] = videos.get(u.video, 0) + 1
    target = 0
    for videos in by_speaker.values():
        total = sum(videos.values())
        pairs = total * (total - 1) // 2
        target += pairs if len(videos) == 1 else pairs - sum(n * (n - 1) // 2 for n in videos.values())
    sizes = [sum(v.values()) for v in by_speaker.values()]
    everything = sum(sizes) * (sum(sizes) - 1) // 2
    return target, everything - sum(n * (n - 1) // 2 for n in sizes)


def make_split_trials(utterances, max_trials: int, rng: np.random.Generator) -> list:
    """Balanced trials (``wavlmrawnet.evaluation.Trial``) over ``utterances``: as many as the pools allow, at most
    ``max_trials``, half target. Raises ValueError when there is no target or no non-target pair."""
    from wavlmrawnet.synthetic.corpus import build_trials
    from wavlmrawnet.evaluation.trials import Trial

    target, nontarget = trial_pool_sizes(utterances)
    half = min(target, nontarget, max_trials // 2)
    if half < 1:
        raise ValueError(
            f"no trials possible: {target} target and {nontarget} non-target pairs among {len(utterances)} utterances "
            f"of {len({u.speaker for u in utterances})} speakers"
        )
    return [Trial(label, a, b) for label, a, b in build_trials(list(utterances), 2 * half, rng)]


def make_same_language_trials(utterances, languages: Mapping[str, str], max_trials: int, rng) -> list:
    """Balanced trials in which both sides of every trial are in the same language (the language gives nothing
    away; a person who speaks two languages has target trials within each).

    ``languages`` maps an utterance's ``relative_path`` to its language; only languages with 2+ speakers take
    part, each with an equal share of ``max_trials``. Empty when no language has two speakers.
    """
    groups: dict[str, list] = {}
    for u in utterances:
        groups.setdefault(base_language(languages[u.relative_path]), []).append(u)
    usable = {lang: group for lang, group in sorted(groups.items()) if len({u.speaker for u in group}) >= 2}
    trials = []
    for group in usable.values():
        target, nontarget = trial_pool_sizes(group)
        half = min(target, nontarget, max(1, max_trials // (2 * len(usable))))
        if half >= 1:
            trials += make_split_trials(group, 2 * half, rng)
    return trials


# ---------------------------------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class VoiceOutcome:
    voice: Voice
    split: str
    rows: list[dict] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0  # wall time spent on the voice


@dataclass
class BuildReport:
    out: Path
    splits: dict[str, dict]  # split -> speakers, voices, utterances, seconds, trials
    failed: dict[str, str]  # voice key -> reason
    problems: list[str]  # things that make the corpus incomplete beyond failed voices
    seconds: float
    wav_bytes: int

    def to_json(self) -> dict:
        return {
            "out": str(self.out),
            "splits": self.splits,
            "failed_voices": self.failed,
            "problems": self.problems,
            "build_seconds": round(self.seconds, 1),
            "wav_bytes": self.wav_bytes,
        }


def existing_outputs(out: Path) -> list[Path]:
    """The corpus folders and report already under ``out``."""
    outputs = sorted({out / folder.split("/")[0] for folder in SPLITS.values()}) + [out / REPORT_FILENAME]
    return [path for path in outputs if path.exists()]


def _one_line(text: str, limit: int = 500) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())[-limit:]


def _voice_seed(seed: int, voice: Voice) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, zlib.crc32(voice.key.encode("utf-8"))])


def _run_voice_job(job: tuple) -> VoiceOutcome:
    voice, split, plans, wav_dir, synthesize, channel_seed, min_seconds = job
    start = time.perf_counter()
    outcome = VoiceOutcome(voice, split)
    try:
        outcome.rows = write_voice(
            voice, plans, wav_dir, synthesize, np.random.default_rng(channel_seed), min_seconds, split
        )
    except SynthesisError as error:
        outcome.error = str(error)
    except Exception as error:  # reported with the failed voices; the build goes on with the others
        where = traceback.extract_tb(error.__traceback__)[-1]
        outcome.error = f"{type(error).__name__}: {error} (at {Path(where.filename).name}:{where.lineno})"
    outcome.seconds = time.perf_counter() - start
    return outcome


def _check_build_arguments(utterances_per_voice, videos_per_speaker, min_seconds, max_seconds, max_trials, jobs):
    if videos_per_speaker < 1 or utterances_per_voice < max(2, videos_per_speaker):
        raise ValueError(
            f"need videos_per_speaker >= 1 and utterances_per_voice >= max(2, videos_per_speaker), got "
            f"{utterances_per_voice} utterances and {videos_per_speaker} videos"
        )
    if not 0.5 <= min_seconds <= max_seconds:
        raise ValueError(f"need 0.5 <= min_seconds <= max_seconds, got {min_seconds} and {max_seconds}")
    if max_trials < 2:
        raise ValueError(f"max_trials must be >= 2, got {max_trials}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")


def build_corpus(
    out: str | os.PathLike,
    mbrola_voices: Sequence[Voice],
    rhvoice_voices: Sequence[Voice],
    synthesizers: Mapping[str, Synthesizer],
    *,
    utterances_per_voice: int = 20,
    videos_per_speaker: int = 3,
    min_seconds: float = 3.0,
    max_seconds: float = 10.0,
    test_fraction: float = 0.3,
    seed: int = 0,
    max_trials: int = 6000,
    jobs: int = 1,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Write the corpus under ``out`` (see the module docstring) from the given voices.

    ``synthesizers`` maps a voice's ``engine`` to the function that speaks it (inject a fake one to test).
    MBROLA speakers are split into in-domain train / test (seeded, speaker-disjoint); RHVoice speakers form the
    cross-synthesiser test set. A voice that fails is reported (``BuildReport.failed``) and the others go on.
    ``jobs > 1`` renders voices in that many processes.
    """
    _check_build_arguments(utterances_per_voice, videos_per_speaker, min_seconds, max_seconds, max_trials, jobs)
    start = time.perf_counter()
    out = Path(out)
    for voice in [*mbrola_voices, *rhvoice_voices]:
        if voice.engine not in synthesizers:
            raise ValueError(f"no synthesiser for engine {voice.engine!r} (voice {voice.key})")
    if {v.speaker for v in mbrola_voices} & {v.speaker for v in rhvoice_voices}:
        raise ValueError("MBROLA and RHVoice voices must not share speaker ids")
    existing = existing_outputs(out)
    if existing and not overwrite:
        raise FileExistsError(f"corpus output already exists: {', '.join(map(str, existing))} (use --overwrite)")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    train, test = split_speakers([v.speaker for v in mbrola_voices], test_fraction, seed) if mbrola_voices else ([], [])
    split_of = {s: "in_domain_train" for s in train} | {s: "in_domain_test" for s in test}
    split_of |= {v.speaker: "cross_synth_test" for v in rhvoice_voices}
    voices_of: dict[str, list[Voice]] = {}
    for voice in [*mbrola_voices, *rhvoice_voices]:
        voices_of.setdefault(voice.speaker, []).append(voice)

    job_list = []
    for voice in [*mbrola_voices, *rhvoice_voices]:
        plan_seed, channel_seed = _voice_seed(seed, voice).spawn(2)
        prefix = f"{_slug(voice.name)}-" if len(voices_of[voice.speaker]) > 1 else ""
        plans = plan_voice(
            voice, utterances_per_voice, videos_per_speaker, min_seconds, max_seconds,
            np.random.default_rng(plan_seed), prefix,
        )
        split = split_of[voice.speaker]
        wav_dir = out / SPLITS[split] / "wav"
        job_list.append((voice, split, plans, wav_dir, synthesizers[voice.engine], channel_seed, min_seconds))

    outcomes: list[VoiceOutcome] = []

    def record(outcome: VoiceOutcome) -> None:
        outcomes.append(outcome)
        status = "FAILED: " + outcome.error if outcome.error else f"{len(outcome.rows)} utterances"
        progress = f"[{len(outcomes)}/{len(job_list)}]"
        log(f"{progress} {outcome.voice.key} -> {outcome.split} ({outcome.seconds:.1f} s) {status}")

    if jobs == 1:
        for job in job_list:
            record(_run_voice_job(job))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for outcome in pool.map(_run_voice_job, job_list):
                record(outcome)

    from wavlmrawnet.synthetic.corpus import Utterance
    from wavlmrawnet.evaluation.trials import write_trials

    failed = {o.voice.key: o.error for o in outcomes if o.error}
    problems: list[str] = []
    splits: dict[str, dict] = {}
    for split, folder in SPLITS.items():
        rows = sorted((r for o in outcomes if o.split == split for r in o.rows), key=lambda r: r["path"])
        voices = [o for o in outcomes if o.split == split]
        info = {
            "folder": folder,
            "voices_planned": len(voices),
            "voices_ok": sum(1 for o in voices if not o.error),
            "speakers": len({r["speaker"] for r in rows}),
            "utterances": len(rows),
            "seconds": round(sum(r["seconds"] for r in rows), 1),
            "languages": sorted({base_language(r["language"]) for r in rows}),
        }
        splits[split] = info
        if not voices:
            continue
        split_dir = out / folder
        if not rows:
            problems.append(f"{folder}: every voice failed, the split is empty")
            continue
        split_dir.mkdir(parents=True, exist_ok=True)
        with open(split_dir / METADATA_FILENAME, "w", encoding="utf-8") as file:
            file.writelines(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
        if split == "in_domain_train":
            continue
        utterances = [Utterance(r["speaker"], r["video"], r["path"]) for r in rows]
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7, _SPLIT_CODES[split]]))
        try:
            trials = make_split_trials(utterances, max_trials, rng)
        except ValueError as error:
            problems.append(f"{folder}: {error}")
            continue
        write_trials(trials, split_dir / TRIALS_FILENAME)
        info["trials"] = len(trials)
        language_of = {r["path"]: r["language"] for r in rows}
        same_language = make_same_language_trials(utterances, language_of, max_trials, rng)
        if same_language:
            write_trials(same_language, split_dir / SAME_LANGUAGE_TRIALS_FILENAME)
        info["trials_same_language"] = len(same_language)

    wav_bytes = sum(p.stat().st_size for p in out.rglob("*.wav") if p.is_file())
    report = BuildReport(out, splits, failed, problems, time.perf_counter() - start, wav_bytes)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILENAME).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", "utf-8")
    return report


# ---------------------------------------------------------------------------------------------------------------------
# Debian packages through a private apt configuration
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    signed_by: str | None  # keyring file, or None (apt's trusted keys)


def parse_apt_sources(text: str, deb822: bool) -> list[AptSource]:
    """The enabled ``deb`` entries of a sources file (one-line ``.list`` or deb822 ``.sources`` format)."""
    sources = []
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            last = None
            for line in stanza.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                if line[0] in " \t" and last:  # continuation line
                    fields[last] += "\n" + line.strip()
                    continue
                name, _, value = line.partition(":")
                last = name.strip().lower()
                fields[last] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
                continue
            signed = fields.get("signed-by")
            signed = signed if signed and signed.startswith("/") and "\n" not in signed else None
            for uri in fields.get("uris", "").split():
                sources.append(AptSource(uri.rstrip("/"), tuple(fields.get("suites", "").split()), signed))
        return sources
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.match(r"^deb\s+(?:\[(?P<options>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)", line)
        if not match:
            continue
        options = dict(o.split("=", 1) for o in (match["options"] or "").split() if "=" in o)
        signed = options.get("signed-by")
        sources.append(AptSource(match["uri"].rstrip("/"), (match["suite"],), signed if signed else None))
    return sources


def system_apt_sources(etc: Path = Path("/etc/apt")) -> list[AptSource]:
    sources = []
    files = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*")) if etc.exists() else []
    for path in files:
        if path.is_file() and path.suffix in (".list", ".sources"):
            sources += parse_apt_sources(path.read_text(encoding="utf-8", errors="replace"), path.suffix == ".sources")
    return sources


def os_codename(os_release: Path = Path("/etc/os-release")) -> str:
    values = dict(
        line.split("=", 1) for line in os_release.read_text(encoding="utf-8").splitlines() if "=" in line
    )
    codename = values.get("VERSION_CODENAME", "").strip().strip('"')
    if not codename:
        raise RuntimeError(f"{os_release} names no VERSION_CODENAME; pass --mirror and --suite")
    return codename


def private_sources_list(sources: Sequence[AptSource], codename: str) -> str:
    """Lines for the private sources list: the system's Debian entries for ``codename`` (and ``-updates``) with
    ``main contrib non-free``. Raises RuntimeError when the system lists no such entry."""
    lines = []
    for source in sources:
        for suite in source.suites:
            if suite in (codename, f"{codename}-updates"):
                options = f"[signed-by={source.signed_by}] " if source.signed_by else ""
                line = f"deb {options}{source.uri} {suite} main contrib non-free\n"
                if line not in lines:
                    lines.append(line)
    if not lines:
        raise RuntimeError(
            f"the system's apt sources list no entry for suite {codename!r}; pass --mirror URL (and --suite)"
        )
    return "".join(lines)


def private_apt_config(apt_dir: Path, as_root: bool) -> str:
    """An APT_CONFIG file that keeps apt's sources, lists and cache in ``apt_dir`` and reads the system's dpkg
    status (read-only) so that only packages missing from the system are fetched."""
    lines = [
        f'Dir::State "{apt_dir}/state";',
        f'Dir::State::Lists "{apt_dir}/lists";',
        'Dir::State::status "/var/lib/dpkg/status";',
        f'Dir::Cache "{apt_dir}/cache";',
        f'Dir::Etc::SourceList "{apt_dir}/sources.list";',
        f'Dir::Etc::SourceParts "{apt_dir}/sources.list.d";',
        f'Dir::Etc::Preferences "{apt_dir}/preferences";',
        f'Dir::Etc::PreferencesParts "{apt_dir}/preferences.d";',
        f'Dir::Etc::Parts "{apt_dir}/apt.conf.d";',
        'APT::Get::List-Cleanup "false";',
    ]
    if as_root:  # apt's _apt user could not write into a root-owned cache folder
        lines.append('APT::Sandbox::User "root";')
    return "\n".join(lines) + "\n"


def _run(command: Sequence[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as error:
        raise RuntimeError(f"{what}: {command[0]} is not installed ({error})") from error
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-2000:]
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {' '.join(command)}\n{tail}")
    return result


class PrivateApt:
    """apt-get / apt-cache / dpkg -x with their own configuration under ``cache_dir``; the system is untouched."""

    def __init__(self, cache_dir: Path, sources_list: str):
        self.dir = Path(cache_dir) / "apt"
        self.root = Path(cache_dir) / "root"  # the packages' files, as dpkg -x unpacks them
        self.debs = Path(cache_dir) / "debs"
        self.manifest = self.root / ".extracted-packages"
        for folder in ("state", "lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d",
                       "apt.conf.d"):
            (self.dir / folder).mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.dir / "sources.list").write_text(sources_list, encoding="utf-8")
        (self.dir / "apt.conf").write_text(private_apt_config(self.dir, os.geteuid() == 0), encoding="utf-8")
        self.env = {**os.environ, "APT_CONFIG": str(self.dir / "apt.conf"), "LC_ALL": "C"}

    def update(self) -> None:
        _run(["apt-get", "update"], "apt-get update (private configuration)", env=self.env)

    def package_names(self, prefix: str) -> list[str]:
        result = _run(["apt-cache", "pkgnames", prefix], "apt-cache pkgnames", env=self.env)
        return sorted(set(result.stdout.split()))

    def packages_to_fetch(self, packages: Sequence[str]) -> list[str]:
        """``packages`` plus every dependency the system lacks (apt-get install --simulate)."""
        result = _run(
            ["apt-get", "install", "--simulate", "--no-install-recommends", *packages],
            "resolving dependencies", env=self.env,
        )
        missing = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("Inst ")]
        return sorted(set(missing) | set(packages))

    def extracted(self) -> set[str]:
        return set(self.manifest.read_text().split()) if self.manifest.exists() else set()

    def fetch_and_extract(self, packages: Sequence[str], log: Callable[[str], None] = print) -> None:
        """apt-get download + dpkg -x into ``root`` for the packages not unpacked yet; the .deb files are then
        deleted (the manifest remembers what was unpacked)."""
        done = self.extracted()
        todo = sorted(set(packages) - done)
        if not todo:
            return
        log(f"downloading {len(todo)} Debian packages ...")
        self.debs.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "download", *todo], "apt-get download", env=self.env, cwd=self.debs)
        for deb in sorted(self.debs.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(self.root)], f"unpacking {deb.name}")
            done.add(deb.name.split("_", 1)[0])
            self.manifest.write_text("\n".join(sorted(done)) + "\n")
            deb.unlink()
        not_unpacked = sorted(set(todo) - done)
        if not_unpacked:
            raise RuntimeError(f"apt-get download gave no .deb for: {', '.join(not_unpacked)}")


@dataclass(frozen=True)
class ToolPaths:
    """The synthesisers as unpacked under ``root`` and the environment that runs them."""

    root: Path

    @property
    def lib_dir(self) -> Path:  # usr/lib/<multiarch triplet>
        found = sorted((self.root / "usr/lib").glob("*/espeak-ng-data"))
        if not found:
            raise RuntimeError(f"no usr/lib/*/espeak-ng-data under {self.root}: espeak-ng-data is not unpacked")
        return found[0].parent

    @property
    def espeak_ng(self) -> Path:
        return self.root / "usr/bin/espeak-ng"

    @property
    def espeak_data(self) -> Path:
        return self.lib_dir / "espeak-ng-data"

    @property
    def rhvoice_library(self) -> Path:
        return self.lib_dir / "libRHVoice.so.5"

    @property
    def rhvoice_data(self) -> Path:
        return self.root / "usr/share/RHVoice"

    @property
    def rhvoice_config(self) -> Path:
        return self.root / "etc/RHVoice"

    def env(self) -> dict[str, str]:
        library_dirs = sorted({str(p.parent) for p in self.root.rglob("*.so*") if p.is_file()})
        inherited = [os.environ["LD_LIBRARY_PATH"]] if os.environ.get("LD_LIBRARY_PATH") else []
        return {
            **os.environ,
            "PATH": f"{self.root / 'usr/bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "LD_LIBRARY_PATH": os.pathsep.join(library_dirs + inherited),
            "ESPEAK_DATA_PATH": str(self.espeak_data),
        }


def parse_espeak_mbrola_voices(voices_dir: Path) -> dict[str, dict[str, str]]:
    """espeak-ng's ``voices/mb`` files: ``{espeak voice: {"language", "database", "gender"}}``."""
    voices = {}
    for path in sorted(Path(voices_dir).glob("mb-*")):
        fields: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ("language", "gender", "mbrola") and parts[0] not in fields:
                fields[parts[0]] = parts[1]
        if "mbrola" in fields and "language" in fields:
            voices[path.name] = {
                "language": fields["language"], "database": fields["mbrola"], "gender": fields.get("gender", "unknown")
            }
    return voices


def mbrola_candidates(espeak_voices: Mapping[str, Mapping[str, str]], packages: Iterable[str]):
    """One Voice per MBROLA database that has both a Debian package (``mbrola-<id>``) and espeak-ng's primary
    voice ``mb-<id>`` (variants such as ``mb-de2-en`` reuse the same speaker and are left out).

    Returns ``(voices, unusable)``; ``unusable`` maps package -> why it cannot be used.
    """
    voices, unusable = [], {}
    for package in sorted(packages):
        database = package.removeprefix("mbrola-")
        espeak_name = f"mb-{database}"
        info = espeak_voices.get(espeak_name)
        if info is None:
            unusable[package] = f"espeak-ng has no voice {espeak_name} for this MBROLA database"
            continue
        try:
            base_language(info["language"])
        except ValueError as error:
            unusable[package] = str(error)
            continue
        voices.append(Voice("mbrola", espeak_name, f"mbrola-{database}", info["language"], info["gender"], package))
    return voices, unusable


RHVOICE_LANGUAGE_PACKAGES = {  # RHVoice language folder -> Debian package
    "Albanian": "rhvoice-albanian", "Brazilian-Portuguese": "rhvoice-brazilian-portuguese",
    "English": "rhvoice-english", "Esperanto": "rhvoice-esperanto", "Kyrgyz": "rhvoice-kyrgyz",
    "Macedonian": "rhvoice-macedonian", "Polish": "rhvoice-polish", "Russian": "rhvoice-russian",
    "Tatar": "rhvoice-tatar", "Ukrainian": "rhvoice-ukrainian",
}
RHVOICE_SAME_PERSON = {"aleksandr-hq": "aleksandr", "evgeniy-eng": "evgeniy", "evgeniy-rus": "evgeniy"}


def parse_rhvoice_voices(voices_dir: Path) -> list[Voice]:
    """RHVoice voices from ``<data>/voices/<voice>/voice.info``; voices of one person share a speaker id."""
    voices = []
    for info_path in sorted(Path(voices_dir).glob("*/voice.info")):
        fields = dict(
            line.split("=", 1) for line in info_path.read_text(encoding="utf-8").splitlines() if "=" in line
        )
        name, language = fields.get("name", "").strip(), fields.get("language", "").strip()
        if not name or not language:
            raise ValueError(f"{info_path} names no voice name or language")
        slug = _slug(info_path.parent.name)
        person = RHVOICE_SAME_PERSON.get(slug, slug)
        package = RHVOICE_LANGUAGE_PACKAGES.get(language, f"rhvoice-{_slug(language)}")
        voices.append(Voice("rhvoice", name, f"rhvoice-{person}", language, fields.get("gender", "unknown"), package))
    return voices


def select_speakers(voices: Sequence[Voice], max_speakers: int | None, seed: int, salt: int) -> list[Voice]:
    """The voices of a seeded random choice of at most ``max_speakers`` speakers (all when None)."""
    speakers = sorted({v.speaker for v in voices})
    if max_speakers is not None and max_speakers < len(speakers):
        order = np.random.default_rng(np.random.SeedSequence([seed, salt])).permutation(len(speakers))
        chosen = {speakers[i] for i in order[:max_speakers]}
    else:
        chosen = set(speakers)
    return [v for v in voices if v.speaker in chosen]


class EspeakMbrolaSynthesizer:
    """espeak-ng (its mb-* voices drive the mbrola binary) from the unpacked packages. Picklable."""

    def __init__(self, tools: ToolPaths, timeout_s: float = 120.0):
        self.tools = tools
        self.timeout_s = timeout_s
        self._env = tools.env()

    def __call__(self, voice: Voice, requests: Sequence[SynthesisRequest]) -> list[tuple[np.ndarray, int]]:
        results = []
        with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
            wav = Path(tmp) / "out.wav"
            for request in requests:
                speed = round(175 * request.rate)  # words per minute (espeak-ng's default is 175)
                pitch = int(np.clip(round(50 + 50 * request.pitch), 0, 99))  # 0-99, default 50
                command = [str(self.tools.espeak_ng), "-v", voice.name, "-s", str(speed), "-p", str(pitch), "-b", "1",
                           "-w", str(wav)]
                try:
                    done = subprocess.run(command, input=request.text.encode("utf-8"), capture_output=True,
                                          env=self._env, timeout=self.timeout_s)
                except subprocess.TimeoutExpired as error:
                    raise SynthesisError(f"espeak-ng took more than {self.timeout_s:.0f} s") from error
                stderr = _one_line(done.stderr.decode("utf-8", "replace"))
                if done.returncode != 0 or not wav.exists():
                    raise SynthesisError(f"espeak-ng -v {voice.name} failed (exit {done.returncode}): {stderr}")
                try:
                    samples, rate = sf.read(str(wav), dtype="float32")
                except Exception as error:
                    raise SynthesisError(f"espeak-ng wrote an unreadable wav ({error}); stderr: {stderr}") from error
                results.append((samples, rate))
                wav.unlink()
        return results


class RHVoiceSynthesizer:
    """RHVoice through libRHVoice (ctypes) in a child process per call, with the unpacked data and config
    folders (RHVoice-test cannot be pointed at them). A crash of the library fails only that voice. Picklable."""

    def __init__(self, tools: ToolPaths, timeout_s: float = 600.0):
        self.tools = tools
        self.timeout_s = timeout_s
        self._env = tools.env()

    def __call__(self, voice: Voice, requests: Sequence[SynthesisRequest]) -> list[tuple[np.ndarray, int]]:
        with tempfile.TemporaryDirectory(prefix="rhvoice-") as tmp:
            job = {
                "library": str(self.tools.rhvoice_library),
                "data_path": str(self.tools.rhvoice_data),
                "config_path": str(self.tools.rhvoice_config),
                "voice": voice.name,
                "requests": [
                    {
                        "text": r.text,
                        "rate": float(np.clip(r.rate - 1.0, -1, 1)),  # RHVoice's rate and pitch are -1..1, 0 = default
                        "pitch": float(np.clip(r.pitch, -1, 1)),
                        "out": str(Path(tmp) / f"{i:05d}.wav"),
                    }
                    for i, r in enumerate(requests)
                ],
            }
            job_path = Path(tmp) / "job.json"
            job_path.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
            command = [sys.executable, str(Path(__file__).resolve()), _RHVOICE_WORKER_COMMAND, str(job_path)]
            try:
                done = subprocess.run(command, capture_output=True, env=self._env, timeout=self.timeout_s)
            except subprocess.TimeoutExpired as error:
                limit = f"{self.timeout_s:.0f} s"
                raise SynthesisError(f"RHVoice took more than {limit} for {len(requests)} texts") from error
            stderr = _one_line(done.stderr.decode("utf-8", "replace"))
            if done.returncode != 0:
                how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
                raise SynthesisError(f"RHVoice child process failed ({how}): {stderr}")
            return [sf.read(r["out"], dtype="float32") for r in job["requests"]]


def _rhvoice_worker(job_path: str) -> int:
    """Child process: speak each request of a job file with libRHVoice and write int16 wav files."""
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    c = ctypes
    set_rate_type = c.CFUNCTYPE(c.c_int, c.c_int, c.c_void_p)
    speech_type = c.CFUNCTYPE(c.c_int, c.POINTER(c.c_short), c.c_uint, c.c_void_p)

    class Callbacks(c.Structure):  # RHVoice_callbacks (RHVoice.h, 1.x)
        _fields_ = [("set_sample_rate", set_rate_type), ("play_speech", speech_type), ("process_mark", c.c_void_p),
                    ("word_starts", c.c_void_p), ("word_ends", c.c_void_p), ("sentence_starts", c.c_void_p),
                    ("sentence_ends", c.c_void_p), ("play_audio", c.c_void_p), ("done", c.c_void_p)]

    class InitParams(c.Structure):  # RHVoice_init_params
        _fields_ = [("data_path", c.c_char_p), ("config_path", c.c_char_p),
                    ("resource_paths", c.POINTER(c.c_char_p)), ("callbacks", Callbacks), ("options", c.c_uint)]

    class SynthParams(c.Structure):  # RHVoice_synth_params
        _fields_ = [("voice_profile", c.c_char_p), ("absolute_rate", c.c_double), ("absolute_pitch", c.c_double),
                    ("absolute_volume", c.c_double), ("relative_rate", c.c_double), ("relative_pitch", c.c_double),
                    ("relative_volume", c.c_double), ("punctuation_mode", c.c_int), ("punctuation_list", c.c_char_p),
                    ("capitals_mode", c.c_int), ("flags", c.c_int)]

    library = c.CDLL(job["library"])
    library.RHVoice_new_tts_engine.restype = c.c_void_p
    library.RHVoice_new_tts_engine.argtypes = [c.POINTER(InitParams)]
    library.RHVoice_new_message.restype = c.c_void_p
    library.RHVoice_new_message.argtypes = [c.c_void_p, c.c_char_p, c.c_uint, c.c_int, c.POINTER(SynthParams),
                                            c.c_void_p]
    library.RHVoice_speak.argtypes = [c.c_void_p]
    library.RHVoice_delete_message.argtypes = [c.c_void_p]
    library.RHVoice_delete_tts_engine.argtypes = [c.c_void_p]
    state = {"rate": 0, "chunks": []}

    def on_rate(rate, _user):
        state["rate"] = rate
        return 1

    def on_speech(samples, count, _user):
        state["chunks"].append(np.ctypeslib.as_array(samples, (count,)).copy())
        return 1

    callbacks = Callbacks(set_rate_type(on_rate), speech_type(on_speech))
    params = InitParams(job["data_path"].encode(), job["config_path"].encode(), None, callbacks, 0)
    engine = library.RHVoice_new_tts_engine(c.byref(params))
    if not engine:
        print(f"RHVoice_new_tts_engine failed for data {job['data_path']}", file=sys.stderr)
        return 2
    try:
        for request in job["requests"]:
            state["chunks"] = []
            text = request["text"].encode("utf-8")
            synth = SynthParams(job["voice"].encode("utf-8"), request["rate"], request["pitch"], 0.0, 1.0, 1.0, 1.0,
                                0, None, 0, 0)
            message = library.RHVoice_new_message(engine, text, len(text), 0, c.byref(synth), None)
            if not message:
                print(f"RHVoice_new_message failed for voice {job['voice']!r}", file=sys.stderr)
                return 2
            spoken = library.RHVoice_speak(message)
            library.RHVoice_delete_message(message)
            if not spoken or not state["chunks"] or not state["rate"]:
                voice = job["voice"]
                print(f"RHVoice produced no audio for voice {voice!r} (is the voice installed?)", file=sys.stderr)
                return 2
            sf.write(request["out"], np.concatenate(state["chunks"]), state["rate"], subtype="PCM_16")
    finally:
        library.RHVoice_delete_tts_engine(engine)
    return 0


@dataclass
class PreparedVoices:
    mbrola: list[Voice]
    rhvoice: list[Voice]
    synthesizers: dict[str, Synthesizer]
    failed: dict[str, str]  # voice or package -> reason (not attempted)
    tools_bytes: int


MBROLA_TOOL_PACKAGES = ("espeak-ng", "libespeak-ng1", "espeak-ng-data", "mbrola")
RHVOICE_TOOL_PACKAGES = ("librhvoice5", "librhvoice-core7", "librhvoice-audio2")


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def prepare_debian_voices(
    cache_dir: Path,
    max_mbrola: int | None,
    max_rhvoice: int | None,
    seed: int,
    mirror: str | None = None,
    suite: str | None = None,
    log: Callable[[str], None] = print,
) -> PreparedVoices:
    """Private apt update, download and unpack of the synthesisers and the chosen voices; returns the voices and
    their synthesisers. Needs the network to the Debian mirror (nothing is installed on the system)."""
    for tool in ("apt-get", "apt-cache", "dpkg"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: this script needs a Debian system with apt and dpkg")
    codename = suite or os_codename()
    if mirror:
        keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
        sources = [AptSource(mirror.rstrip("/"), (codename,), str(keyring) if keyring.exists() else None)]
    else:
        sources = system_apt_sources()
    apt = PrivateApt(cache_dir, private_sources_list(sources, codename))
    log(f"apt-get update with {apt.dir / 'sources.list'} ...")
    apt.update()
    mbrola_packages = [p for p in apt.package_names("mbrola-") if re.fullmatch(r"mbrola-[a-z]{2}\d", p)]
    rhvoice_packages = [p for p in apt.package_names("rhvoice-") if p in RHVOICE_LANGUAGE_PACKAGES.values()]
    log(f"Debian offers {len(mbrola_packages)} MBROLA voice packages and {len(rhvoice_packages)} RHVoice languages")
    if not mbrola_packages or not rhvoice_packages:
        raise RuntimeError("the private apt lists have no mbrola-* or rhvoice-* packages (contrib / non-free missing?)")
    # RHVoice voices are only known once their language packages are unpacked, so all of them are fetched.
    apt.fetch_and_extract(apt.packages_to_fetch([*MBROLA_TOOL_PACKAGES, *RHVOICE_TOOL_PACKAGES, *rhvoice_packages]),
                          log)
    tools = ToolPaths(apt.root)
    failed: dict[str, str] = {}
    candidates, unusable = mbrola_candidates(parse_espeak_mbrola_voices(tools.espeak_data / "voices/mb"),
                                             mbrola_packages)
    failed.update({f"mbrola/{package}": reason for package, reason in unusable.items()})
    mbrola = select_speakers(candidates, max_mbrola, seed, salt=1)
    apt.fetch_and_extract(apt.packages_to_fetch([v.package for v in mbrola]), log)
    link_dir = tools.espeak_data / "mbrola"  # espeak-ng looks for <its data>/mbrola/<database> first
    link_dir.mkdir(exist_ok=True)
    usable = []
    for voice in mbrola:
        database = voice.name.removeprefix("mb-")
        source = apt.root / "usr/share/mbrola" / database / database
        if not source.is_file():
            failed[voice.key] = f"package {voice.package} has no database file usr/share/mbrola/{database}/{database}"
            continue
        link = link_dir / database
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
        usable.append(voice)
    rhvoice = select_speakers(parse_rhvoice_voices(tools.rhvoice_data / "voices"), max_rhvoice, seed, salt=2)
    synthesizers: dict[str, Synthesizer] = {
        "mbrola": EspeakMbrolaSynthesizer(tools),
        "rhvoice": RHVoiceSynthesizer(tools),
    }
    return PreparedVoices(usable, rhvoice, synthesizers, failed, _folder_bytes(Path(cache_dir)))


# ---------------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------------
def check_outside_repository(path: Path, what: str) -> None:
    """Refuse a folder inside this repository unless git ignores it (generated voices must never be committed)."""
    path = path.resolve()
    if path != REPO_ROOT and REPO_ROOT not in path.parents:
        return
    try:
        ignored = subprocess.run(["git", "-C", str(REPO_ROOT), "check-ignore", "-q", str(path)]).returncode == 0
    except FileNotFoundError:
        ignored = False
    if not ignored:
        raise ValueError(
            f"{what} {path} is inside the repository and not git-ignored; the MBROLA voices' licence forbids "
            "redistributing their output, so choose a folder outside the repository"
        )


def _print_summary(report: BuildReport, prepared_failed: Mapping[str, str], tools_bytes: int, timings: dict) -> None:
    print("\n=== Debian voices corpus ===")
    print(f"output: {report.out}")
    for split, info in report.splits.items():
        trials = f", {info['trials']} trials" if "trials" in info else ""
        same = f" ({info['trials_same_language']} same-language)" if info.get("trials_same_language") else ""
        print(
            f"  {info['folder']:<18} {info['speakers']:>3} speakers ({info['voices_ok']}/{info['voices_planned']} "
            f"voices ok), {info['utterances']:>5} utterances, {info['seconds'] / 3600:.2f} h{trials}{same}"
        )
    total_seconds = sum(info["seconds"] for info in report.splits.values())
    total_utterances = sum(info["utterances"] for info in report.splits.values())
    print(f"  total: {total_utterances} utterances, {total_seconds / 3600:.2f} h of audio, "
          f"{report.wav_bytes / 1e6:.0f} MB of wav; Debian packages (cache): {tools_bytes / 1e6:.0f} MB")
    print("  time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()))
    failures = {**prepared_failed, **report.failed}
    if failures:
        print(f"\n{len(failures)} voices / packages could not be used:")
        for key, reason in sorted(failures.items()):
            print(f"  {key}: {reason}")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [_RHVOICE_WORKER_COMMAND]:
        return _rhvoice_worker(argv[1])
    parser = argparse.ArgumentParser(
        prog="python benchmarks/corpora/debian_voices.py",
        description="Build a speaker corpus (VoxCeleb layout) from Debian's MBROLA and RHVoice voices.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"corpus folder (default {DEFAULT_OUT})")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"apt lists and unpacked packages, reused between runs (default {DEFAULT_CACHE})")
    parser.add_argument("--utterances-per-voice", type=int, default=20)
    parser.add_argument("--videos-per-speaker", type=int, default=3, help="sessions per voice (rate/pitch offsets)")
    parser.add_argument("--max-mbrola-voices", type=int, default=None, help="seeded random subset (default: all)")
    parser.add_argument("--max-rhvoice-voices", type=int, default=None,
                        help="seeded random subset of RHVoice speakers (a person with two voices counts once)")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--test-fraction", type=float, default=0.3, help="share of MBROLA speakers in in_domain/test")
    parser.add_argument("--max-trials", type=int, default=6000, help="trials per test split at most (half target)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="voices rendered in parallel")
    parser.add_argument("--mirror", default=None, help="Debian mirror URL (default: the one the system's apt uses)")
    parser.add_argument("--suite", default=None, help="Debian suite (default: this system's codename)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing corpus under --out")
    args = parser.parse_args(argv)
    args.out, args.cache_dir = args.out.expanduser(), args.cache_dir.expanduser()
    for name in ("max_mbrola_voices", "max_rhvoice_voices"):
        value = getattr(args, name)
        if value is not None and value < (3 if name == "max_mbrola_voices" else 2):
            parser.error(f"--{name.replace('_', '-')} must be >= {3 if name == 'max_mbrola_voices' else 2}")
    try:
        _check_build_arguments(args.utterances_per_voice, args.videos_per_speaker, args.min_seconds,
                               args.max_seconds, args.max_trials, args.jobs)
        check_outside_repository(args.out, "--out")
        check_outside_repository(args.cache_dir, "--cache-dir")
        if existing_outputs(args.out) and not args.overwrite:
            raise ValueError(f"{args.out} already holds a corpus; pass --overwrite to replace it")
    except ValueError as error:
        parser.error(str(error))

    start = time.perf_counter()
    try:
        prepared = prepare_debian_voices(args.cache_dir, args.max_mbrola_voices, args.max_rhvoice_voices,
                                         args.seed, args.mirror, args.suite)
        prepared_at = time.perf_counter()
        print(f"{len(prepared.mbrola)} MBROLA and {len(prepared.rhvoice)} RHVoice voices to synthesise "
              f"({len(prepared.failed)} unusable, listed at the end)")
        report = build_corpus(
            args.out, prepared.mbrola, prepared.rhvoice, prepared.synthesizers,
            utterances_per_voice=args.utterances_per_voice, videos_per_speaker=args.videos_per_speaker,
            min_seconds=args.min_seconds, max_seconds=args.max_seconds, test_fraction=args.test_fraction,
            seed=args.seed, max_trials=args.max_trials, jobs=args.jobs, overwrite=args.overwrite,
        )
    except (RuntimeError, ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    timings = {"packages": prepared_at - start, "synthesis": report.seconds, "total": time.perf_counter() - start}
    report_path = args.out / REPORT_FILENAME
    data = json.loads(report_path.read_text(encoding="utf-8"))
    data.update({"unusable_packages_or_voices": prepared.failed, "package_cache_bytes": prepared.tools_bytes,
                 "timings_seconds": {k: round(v, 1) for k, v in timings.items()}, "arguments": {
                     k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}})
    report_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _print_summary(report, prepared.failed, prepared.tools_bytes, timings)
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
