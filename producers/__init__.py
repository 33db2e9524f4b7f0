"""One small typed async function per job intent; the only place job names are written."""
