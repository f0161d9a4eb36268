"""One pipeline per command: explicit parameters in, a typed run record out, every file it writes written here."""
