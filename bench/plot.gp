# plot.gp - throughput and p99 latency against concurrency, one line per
# workload, from bench/run.sh's plot.dat (columns: c, then ops/s and p99
# ms for each workload named in plot.cols, one a line).
#
#   gnuplot -e "datafile='out/plot.dat'; colsfile='out/plot.cols'; \
#               outfile='out/results.png'" bench/plot.gp

if (!exists("datafile")) datafile = "bench/out/plot.dat"
if (!exists("colsfile")) colsfile = "bench/out/plot.cols"
if (!exists("outfile")) outfile = "bench/out/results.png"

# One workload name a line; names may hold spaces.
n = int(system("wc -l < '" . colsfile . "'"))
name(i) = system(sprintf("sed -n %dp '%s'", i, colsfile))

set terminal pngcairo size 1400,560 font ",11" noenhanced
set output outfile
set multiplot layout 1,2 title "rzkv: 3 local nodes, replica_count 3, QUORUM (median of runs)"

set logscale x 2
set xtics (1, 4, 16, 64, 256)
set xrange [0.8:90]
set xlabel "concurrency (requests in flight)"
set grid
set key top left

set title "throughput"
set ylabel "ops/s"
set yrange [0:*]
plot for [i=1:n] datafile using 1:(column(2 * i)) with linespoints \
    lw 2 pt 7 title name(i)

set title "p99 latency"
set ylabel "ms (log)"
set logscale y
set yrange [*:*]
set key bottom right
plot for [i=1:n] datafile using 1:(column(2 * i + 1)) with linespoints \
    lw 2 pt 7 title name(i)

unset multiplot
