/* Allocates argv[1] MiB, touches every page, holds it briefly, exits 0. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 200;
    char *p = malloc(mib << 20);
    if (!p) return 2;
    memset(p, 1, mib << 20);
    usleep(100000);
    return p[12345] == 1 ? 0 : 3;
}
