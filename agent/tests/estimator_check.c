// Checks agent/src/estimator.h against libm and by simulation: the hooks' math (no libm there) must
// agree with exp/log, and the per-call estimator must be unbiased for calls of any size, with the
// standard error the README states. Prints one line per check; exit status 1 on a failure.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../src/estimator.h"

static int failures;

static void expect(int ok, const char *what) {
    printf("  %s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}

int main(void) {
    double worst = 0;
    for (double u = 1e-300; u <= 1; u *= 1.37) {
        double e = fabs(estimator_neg_log(u) + log(u)) / fmax(1e-300, fabs(log(u)) + 1e-12);
        if (e > worst) worst = e;
    }
    char text[160];
    snprintf(text, sizeof text, "-ln(u) within %.1e of libm over (0, 1]", worst);
    expect(worst < 1e-10, text);
    worst = 0;
    for (double x = 1e-9; x < 60; x *= 1.01) {
        double e = fabs(estimator_one_minus_exp_neg(x) + expm1(-x)) / -expm1(-x);
        if (e > worst) worst = e;
    }
    snprintf(text, sizeof text, "1 - exp(-x) within %.1e of libm over (0, 60)", worst);
    expect(worst < 1e-10, text);

    // Simulation: one thread's stream interleaving calls of very different sizes (as the hooks see
    // it): each site's estimate must be within 4 standard errors of its truth.
    const uint64_t mean = 512 << 10;
    const uint64_t sizes[] = {64, 300 << 10, 4 << 20, 2000, 256 << 10};
    const int sites = sizeof sizes / sizeof sizes[0];
    const long rounds = 200000;
    double estimate[5] = {0}, truth[5] = {0};
    uint64_t state = estimator_splitmix64(42);
    int64_t countdown = estimator_countdown(&state, mean);
    for (long r = 0; r < rounds; r++) {
        for (int s = 0; s < sites; s++) {
            long calls = s == 0 ? 200 : s == 3 ? 20 : 1;
            for (long c = 0; c < calls; c++) {
                truth[s] += (double)sizes[s];
                countdown -= (int64_t)sizes[s];
                if (countdown < 0) {
                    estimate[s] += (double)estimator_weight(sizes[s], mean);
                    countdown = estimator_countdown(&state, mean);
                }
            }
        }
    }
    for (int s = 0; s < sites; s++) {
        double p = -expm1(-(double)sizes[s] / mean);
        double n = truth[s] / sizes[s];
        double se = sqrt((1 - p) / (n * p));
        double error = estimate[s] / truth[s] - 1;
        snprintf(text, sizeof text, "site of %llu-byte calls: error %+.4f%%, standard error %.4f%%",
                 (unsigned long long)sizes[s], 100 * error, 100 * se);
        expect(fabs(error) <= 4 * se + 1e-6, text);
    }
    return failures ? 1 : 0;
}
