"""The console: the web page where a security desk enrols people, answers reviews and watches doors."""
