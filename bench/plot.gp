# docs/bench.png from bench/report.py's data files.
# Called as: gnuplot -e "thr='...'; cost='...'; out='...'; ncol=N; has_thr=1; has_cost=1" plot.gp
set terminal pngcairo size 1200,480 font "sans,10"
set output out
set datafile missing "NA"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set yrange [0:*]
set multiplot layout 1,(has_thr + has_cost)

if (has_thr) {
    set title "Throughput, fraction of direct (higher is better)"
    plot for [i=2:ncol] thr using i:xtic(1) title columnheader(i)
}
if (has_cost) {
    set title "Cost, relative to the best of HAProxy/nginx (lower is better)"
    plot for [i=2:ncol] cost using i:xtic(1) title columnheader(i)
}

unset multiplot
