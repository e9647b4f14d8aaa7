# plot.gp - draws the headline comparison: gnuplot -e "dat='x.dat'; out='x'" plot.gp
# writes out.png and out.svg (clustered bars, millions of operations/s).
if (!exists("dat")) dat = "results/headline.dat"
if (!exists("out")) out = "results/headline"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set ylabel "million operations / s, log scale (higher is better)"
set termoption noenhanced
set logscale y
set title "ftrt: free-threaded vs GIL mode (2-core machine)"
set key top right
set grid ytics
set yrange [1:*]
set xtics rotate by -30
set terminal pngcairo size 1000,560 font ",11" noenhanced
set output out.".png"
plot dat using 2:xtic(1) title "free-threaded" lc rgb "#2a7ab0", '' using 3 title "GIL" lc rgb "#c0504d"
set terminal svg size 1000,560 dynamic font ",11" noenhanced
set output out.".svg"
replot
