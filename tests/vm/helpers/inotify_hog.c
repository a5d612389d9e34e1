/* The VM suite's counter hog (static: the guest is busybox alone).
 * `inotify_hog hog`: makes inotify instances until the kernel refuses one,
 * prints "held N" and holds them until killed.
 * `inotify_hog probe`: makes one, prints "ok" (or why not, exit 1). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "hog") == 0) {
        long n = 0;
        while (inotify_init1(IN_CLOEXEC) >= 0)
            n++;
        printf("held %ld\n", n);
        fflush(stdout);
        for (;;)
            pause();
    }
    if (argc == 2 && strcmp(argv[1], "probe") == 0) {
        if (inotify_init1(IN_CLOEXEC) < 0) {
            printf("inotify_init1: %s\n", strerror(errno));
            return 1;
        }
        printf("ok\n");
        return 0;
    }
    fprintf(stderr, "usage: inotify_hog hog|probe\n");
    return 2;
}
