// loadgen: a small closed-loop HTTPS load generator for bench/api_scaling.py.
//
// Each of -c goroutines sends GETs to the paths of -paths (one per line, taken round robin from a
// per-goroutine offset) on -base over its own kept-alive connection, for -d, and the program
// prints one JSON line: requests, errors, seconds, p50/p99 latency (ms) and the first error.
// Written in Go so that the client costs a small fraction of the server's CPU per request: a
// Python client needs about a core of its own at a few thousand requests per second, which on a
// two-core machine hides how the API tier scales.
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

type result struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Seconds  float64 `json:"seconds"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	FirstErr string  `json:"first_error,omitempty"`
}

func main() {
	base := flag.String("base", "", "https://host:port")
	pathsFile := flag.String("paths", "", "file with one request path per line")
	concurrency := flag.Int("c", 8, "concurrent clients")
	duration := flag.Duration("d", 5*time.Second, "how long to send (at most 10m)")
	accept := flag.String("accept", "application/json", "Accept header")
	flag.Parse()
	if *base == "" || *pathsFile == "" || *concurrency < 1 || *concurrency > 1024 || *duration <= 0 || *duration > 10*time.Minute {
		fmt.Fprintln(os.Stderr, "usage: loadgen -base https://127.0.0.1:PORT -paths FILE [-c N] [-d 5s]")
		os.Exit(2)
	}
	paths, err := readPaths(*pathsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var latencies []time.Duration
	res := result{}
	deadline := time.Now().Add(*duration)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < *concurrency; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			client := &http.Client{
				Timeout: 30 * time.Second,
				Transport: &http.Transport{
					TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // loopback, self-signed
					MaxIdleConnsPerHost: 1,
					DisableCompression:  true,
				},
			}
			var mine []time.Duration
			errs, firstErr := 0, ""
			for n := i; time.Now().Before(deadline); n++ {
				req, _ := http.NewRequest("GET", *base+paths[n%len(paths)], nil)
				req.Header.Set("Accept", *accept)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s: HTTP %d", paths[n%len(paths)], resp.StatusCode)
					}
				}
				if err != nil {
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			res.Errors += errs
			if res.FirstErr == "" {
				res.FirstErr = firstErr
			}
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Requests = len(latencies)
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	res.P50Ms = percentile(latencies, 0.50)
	res.P99Ms = percentile(latencies, 0.99)
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func readPaths(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); strings.HasPrefix(line, "/") {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no paths (lines starting with /)", name)
	}
	return out, s.Err()
}

func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return float64(sorted[i].Microseconds()) / 1000
}
