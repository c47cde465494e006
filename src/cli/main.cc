// Placeholder until the command line lands (being written in this change).
int main() { return 0; }
