/* Driver for fuzz_engine.c where libFuzzer (clang) is not available: replays every file given (corpus),
 * then feeds random and mutated-corpus inputs until the time budget (seconds, argv[1] = "-max_total_time=N"
 * like libFuzzer) runs out. Crashes surface as ASan/UBSan reports (the build has both). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t s = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) { s ^= s << 13, s ^= s >> 7, s ^= s << 17; return s; }

int main(int argc, char **argv) {
    double budget = 10;
    static uint8_t corpus[64][4096];
    size_t lens[64], nc = 0;
    long cases = 0;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "-max_total_time=", 16)) { budget = atof(argv[i] + 16); continue; }
        DIR *d = opendir(argv[i]);
        struct dirent *ent;
        while (d && (ent = readdir(d)) && nc < 64) {
            char path[4096];
            if (ent->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", argv[i], ent->d_name);
            FILE *f = fopen(path, "rb");
            if (!f) continue;
            lens[nc] = fread(corpus[nc], 1, sizeof corpus[nc], f);
            fclose(f);
            LLVMFuzzerTestOneInput(corpus[nc], lens[nc]), cases++;
            nc++;
        }
        if (d) closedir(d);
    }
    printf("replayed %zu corpus files\n", nc);
    s ^= (uint64_t)time(NULL);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    static uint8_t buf[4096];
    for (;;) {
        size_t n;
        if (nc && (rnd() & 1)) { /* mutate a corpus entry */
            size_t k = rnd() % nc;
            n = lens[k];
            memcpy(buf, corpus[k], n);
            for (int m = 1 + rnd() % 8; m-- && n;) buf[rnd() % n] ^= (uint8_t)(1 + rnd() % 255);
        } else {
            n = 1 + rnd() % sizeof buf;
            for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rnd();
        }
        LLVMFuzzerTestOneInput(buf, n), cases++;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) * 1e-9 > budget) break;
    }
    printf("fuzz_engine: %ld cases, no sanitizer report\n", cases);
    return 0;
}
