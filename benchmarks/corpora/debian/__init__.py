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
reverb; the project's own ``wavlmrawnet.synthetic.channel`` model), so the channel does not identify the voice.

Output (VoxCeleb layout, 16 kHz mono 16-bit wav)::

    <out>/in_domain/train/wav/<speaker>/<video>/<utt>.wav    MBROLA voices, speaker-disjoint seeded split
    <out>/in_domain/test/wav/...  + trials.txt (+ trials_same_language.txt)
    <out>/cross_synth/test/wav/...  + trials.txt (+ trials_same_language.txt)   RHVoice voices
    <out>/<split>/metadata.jsonl   one JSON line per utterance (voice, text, rate, pitch, channel)
    <out>/build_report.json        voices used, voices that failed and why, sizes and timings

Trial paths are relative to the split's ``wav`` folder. The MBROLA voices may only be used non-commercially and
with the MBROLA program: the corpus is generated at benchmark time and must never be committed (see README.md).

    python -m benchmarks.corpora.debian_voices --out ~/.cache/wavlmrawnet/debian_voices

Modules: ``text`` (word lists, from ``words.json``), ``voices`` (which voices, which speakers), ``apt`` (the private
apt), ``synthesizers`` (espeak-ng/MBROLA, RHVoice through ``rhvoice_worker``), ``utterances`` (plan, synthesise, cut,
channel, write), ``corpus`` (split, trials, the whole build), ``cli`` (the command; also
``python -m benchmarks.corpora.debian``).
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
