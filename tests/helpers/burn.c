/* Burns CPU until its own getrusage says it used argv[1] seconds, then
 * prints that figure: the truth that packrun's accounting is held to. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static double used(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    double target = argc > 1 ? atof(argv[1]) : 2.0;
    volatile unsigned long x = 0;
    while (used() < target)
        for (int i = 0; i < 100000; i++) x += i;
    printf("%.6f\n", used());
    return 0;
}
