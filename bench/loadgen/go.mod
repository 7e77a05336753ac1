module clusterpedia.local/loadgen

go 1.22
