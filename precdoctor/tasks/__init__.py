"""Task metrics: audio loading, CTC and Whisper decoding, WER/CER."""
