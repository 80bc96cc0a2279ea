"""Records: signed headers, metadata ciphertexts and content chunks, with their versions."""
