"""What a Whisper task can put under test (a module of its own: the registry and the Whisper task both read it)."""

WHISPER_PARTS = ("encoder", "decoder", "both")
