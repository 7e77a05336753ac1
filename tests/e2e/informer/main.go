// Command informer runs client-go informers over the pods and configmaps of every cluster that
// Clusterpedia serves (a kubeconfig whose server is <host>/apis/clusterpedia.io/v1beta1/resources)
// and, on SIGUSR1, writes its caches as JSON to the -dump file (written aside, then renamed).
//
// The informers are client-go's SharedIndexInformers, real reflectors (ListAndWatch; watch-list,
// as the WatchListClient feature gate has it by default) with one change a multi-cluster client
// needs: the same namespace/name exists in several clusters, so their ListerWatcher folds the
// cluster (the annotation shadow.clusterpedia.io/cluster-name) into each object's namespace as it
// arrives, which every key function downstream reads. (An informer transform is too late: the
// reflector's watch-list keys the initial objects by namespace/name before it transforms them.)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

const (
	clusterAnnotation  = "shadow.clusterpedia.io/cluster-name"
	memberRVAnnotation = "clusterpedia.io/member-resource-version"
)

// foldCluster makes "<cluster>/<namespace>" an object's namespace (not a bookmark's or a Status's).
func foldCluster(obj runtime.Object) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	cluster, ok := m.GetAnnotations()[clusterAnnotation]
	if ok && !strings.Contains(m.GetNamespace(), "/") {
		m.SetNamespace(cluster + "/" + m.GetNamespace())
	}
}

// stats counts what a reflector went through: watch requests, and failures (ERROR events, such as a
// broken stream's, and failed lists or watches).
type stats struct {
	events, watches, failures atomic.Int64
}

// folding lists and watches through list and watch, folding the cluster into every object.
func folding(
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
	st *stats,
) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, options metav1.ListOptions) (runtime.Object, error) {
			obj, err := list(ctx, options)
			if err != nil {
				return nil, err
			}
			if err := meta.EachListItem(obj, func(item runtime.Object) error { foldCluster(item); return nil }); err != nil {
				return nil, err
			}
			return obj, nil
		},
		WatchFuncWithContext: func(ctx context.Context, options metav1.ListOptions) (watch.Interface, error) {
			st.watches.Add(1)
			w, err := watchFn(ctx, options)
			if err != nil {
				return nil, err
			}
			return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
				if e.Type == watch.Error {
					st.failures.Add(1)
				}
				foldCluster(e.Object)
				return e, true
			}), nil
		},
	}
}

type entry struct {
	Cluster         string `json:"cluster"`
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	ResourceVersion string `json:"resourceVersion"`
	MemberRV        string `json:"memberResourceVersion"`
}

type dump struct {
	Seq      int64              `json:"seq"`
	Synced   bool               `json:"synced"`
	Events   map[string]int64   `json:"events"`
	Watches  map[string]int64   `json:"watches"`
	Failures map[string]int64   `json:"failures"`
	Caches   map[string][]entry `json:"caches"`
}

func entries(store cache.Store) []entry {
	out := []entry{}
	for _, obj := range store.List() {
		m, err := meta.Accessor(obj)
		if err != nil {
			continue
		}
		ns := m.GetNamespace()
		if i := strings.Index(ns, "/"); i >= 0 {
			ns = ns[i+1:]
		}
		out = append(out, entry{
			Cluster:         m.GetAnnotations()[clusterAnnotation],
			Namespace:       ns,
			Name:            m.GetName(),
			ResourceVersion: m.GetResourceVersion(),
			MemberRV:        m.GetAnnotations()[memberRVAnnotation],
		})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Cluster+"\x00"+a.Namespace+"\x00"+a.Name < b.Cluster+"\x00"+b.Namespace+"\x00"+b.Name
	})
	return out
}

func writeAtomically(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func main() {
	klog.InitFlags(nil)
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig whose server is Clusterpedia's resources path")
	dumpPath := flag.String("dump", "", "file the caches are written to on SIGUSR1")
	flag.Parse()

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	config.QPS, config.Burst = 50, 100
	client := kubernetes.NewForConfigOrDie(config)
	pods, configmaps := client.CoreV1().Pods(""), client.CoreV1().ConfigMaps("")
	listPods := func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return pods.List(ctx, o) }
	listConfigMaps := func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return configmaps.List(ctx, o)
	}
	st := map[string]*stats{"pods": {}, "configmaps": {}}
	stores := map[string]cache.SharedIndexInformer{
		"pods": cache.NewSharedIndexInformer(folding(listPods, pods.Watch, st["pods"]), &corev1.Pod{}, 0, nil),
		"configmaps": cache.NewSharedIndexInformer(
			folding(listConfigMaps, configmaps.Watch, st["configmaps"]), &corev1.ConfigMap{}, 0, nil,
		),
	}
	for name, inf := range stores {
		s := st[name]
		count := func(interface{}) { s.events.Add(1) }
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    count,
			UpdateFunc: func(_, obj interface{}) { count(obj) },
			DeleteFunc: count,
		}); err != nil {
			klog.Fatalf("handler: %v", err)
		}
		if err := inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
			s.failures.Add(1)
			klog.Infof("%s: watch ended: %v", name, err)
		}); err != nil {
			klog.Fatalf("watch error handler: %v", err)
		}
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	for _, inf := range stores {
		go inf.RunWithContext(ctx)
	}
	go func() {
		synced := cache.WaitForCacheSync(ctx.Done(), stores["pods"].HasSynced, stores["configmaps"].HasSynced)
		klog.Infof("caches synced: %v", synced)
	}()

	requests := make(chan os.Signal, 1)
	signal.Notify(requests, syscall.SIGUSR1)
	var seq int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-requests:
			seq++
			d := dump{
				Seq: seq, Synced: true, Caches: map[string][]entry{},
				Events: map[string]int64{}, Watches: map[string]int64{}, Failures: map[string]int64{},
			}
			for name, inf := range stores {
				d.Synced = d.Synced && inf.HasSynced()
				d.Caches[name] = entries(inf.GetStore())
				d.Events[name] = st[name].events.Load()
				d.Watches[name] = st[name].watches.Load()
				d.Failures[name] = st[name].failures.Load()
			}
			data, err := json.Marshal(d)
			if err == nil {
				err = writeAtomically(*dumpPath, data)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "dump: %v\n", err)
			}
		case <-time.After(time.Minute):
		}
	}
}
