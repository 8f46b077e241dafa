using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Prometheus;

namespace Bastion.Observability;

/// <summary>
/// Prometheus metrics for one gateway host (its own registry, so that hosts in one process do not mix).
/// Label children are cached so that the hot path does a dictionary probe, not an allocation.
/// </summary>
public sealed class GatewayMetrics
{
    public CollectorRegistry Registry { get; } = Prometheus.Metrics.NewCustomRegistry();
    readonly Counter _decisions;
    readonly Gauge _active;
    readonly Counter _connections;
    readonly Counter _bytes;
    readonly Histogram _upstreamLatency;
    readonly Counter _authFailures;
    readonly Counter _tlsTunnels;
    readonly ConcurrentDictionary<(string, string), Counter.Child> _tlsChildren = new();
    readonly Histogram _tlsMint;
    public Counter Reloads { get; }
    public Gauge LastReloadSuccess { get; }
    public Gauge LastReloadTimestamp { get; }
    public Gauge LastReloadDuration { get; }
    public Gauge ConfigGeneration { get; }
    public Gauge ListenerUp { get; }
    public Counter LogDropped { get; }
    public Counter LogWritten { get; }
    public Gauge StartTime { get; }
    public Counter AdminRequests { get; }
    /// <summary>Per-target metrics of the configured upstreams.</summary>
    public UpstreamMetrics Upstreams { get; }
    readonly Counter _responses;
    readonly ConcurrentDictionary<string, Slot<Counter.Child[]>> _responseClasses = new();
    int _processMetrics;

    readonly ConcurrentDictionary<(string, string, string, string), Slot<Counter.Child>> _decisionChildren = new();
    readonly ConcurrentDictionary<string, Slot<ListenerSet>> _perListener = new();

    /// <summary>A listener's children.</summary>
    sealed class ListenerSet(Gauge.Child active, Counter.Child total, Counter.Child @in, Counter.Child @out, Histogram.Child latency, Counter.Child auth)
    {
        public readonly Gauge.Child Active = active;
        public readonly Counter.Child Total = total, In = @in, Out = @out, Auth = auth;
        public readonly Histogram.Child Latency = latency;
    }

    // The hot path's lookups skip the dictionaries: a listener passes the same name instance on every call, and its
    // requests mostly the same rule instance, so a small table indexed by the strings' identity holds what the last
    // call with them found (compared by reference; a miss looks up the dictionary as before and takes the slot). The
    // dictionaries hold the slot objects themselves, made once per name: two names that share a table entry evict
    // each other on every call, and a miss must then cost a probe, not an allocation.
    sealed class Slot<T>(string listener, string type, Configuration.Verdict verdict, string rule, T value)
    {
        public readonly string Listener = listener, Type = type, Rule = rule;
        public readonly Configuration.Verdict Verdict = verdict;
        public readonly T Value = value;

        /// <summary>
        /// This slot, or one for the caller's string instances when they differ (a reload parses the names anew):
        /// stored back by the caller, so the table hits again from the next call.
        /// </summary>
        public Slot<T> For(string listener, string type, string rule) =>
            ReferenceEquals(Listener, listener) && ReferenceEquals(Type, type) && ReferenceEquals(Rule, rule)
                ? this : new Slot<T>(listener, type, Verdict, rule, Value);
    }

    readonly Slot<ListenerSet>?[] _listenerSlots = new Slot<ListenerSet>?[8];
    readonly Slot<Counter.Child>?[] _decisionSlots = new Slot<Counter.Child>?[32];
    readonly Slot<Counter.Child[]>?[] _responseSlots = new Slot<Counter.Child[]>?[8];

    static int SlotOf(string s, int length) => RuntimeHelpers.GetHashCode(s) & (length - 1);

    public GatewayMetrics()
    {
        var f = Prometheus.Metrics.WithCustomRegistry(Registry);
        // No exemplars: the default asks the trace context on every increment (several per request), and the gateway
        // records no traces for an exemplar to point at.
        f.ExemplarBehavior = new ExemplarBehavior { DefaultExemplarProvider = null };
        _decisions = f.CreateCounter("bastion_decisions_total", "Policy decisions on requests, commands and connections.",
            new CounterConfiguration { LabelNames = ["listener", "type", "verdict", "rule"] });
        _active = f.CreateGauge("bastion_connections_active", "Client connections open now.",
            new GaugeConfiguration { LabelNames = ["listener"] });
        _connections = f.CreateCounter("bastion_connections_total", "Client connections accepted.",
            new CounterConfiguration { LabelNames = ["listener"] });
        _bytes = f.CreateCounter("bastion_bytes_total", "Bytes relayed; direction in = from clients, out = to clients.",
            new CounterConfiguration { LabelNames = ["listener", "direction"] });
        _upstreamLatency = f.CreateHistogram("bastion_upstream_latency_seconds", "Time from sending a request upstream to its response head.",
            new HistogramConfiguration { LabelNames = ["listener"], Buckets = Histogram.ExponentialBuckets(0.0005, 2, 16) });
        _authFailures = f.CreateCounter("bastion_auth_failures_total", "Failed authentications.",
            new CounterConfiguration { LabelNames = ["listener"] });
        _tlsTunnels = f.CreateCounter("bastion_tls_tunnels_total", "CONNECT tunnels of listeners with tls_inspection, by what became of them: inspected, spliced, refused (by the gateway), client_refused (the client refused the minted certificate).",
            new CounterConfiguration { LabelNames = ["listener", "mode"] });
        _tlsMint = f.CreateHistogram("bastion_tls_mint_seconds", "Time to mint a certificate for a new server name (signature and TLS context).",
            new HistogramConfiguration { LabelNames = ["listener"], Buckets = Histogram.ExponentialBuckets(0.0001, 2, 16) });
        Reloads = f.CreateCounter("bastion_reloads_total", "Configuration reloads.", new CounterConfiguration { LabelNames = ["result"] });
        LastReloadSuccess = f.CreateGauge("bastion_config_last_reload_successful", "1 if the last reload succeeded.");
        LastReloadTimestamp = f.CreateGauge("bastion_config_last_reload_timestamp_seconds", "When the configuration in force was loaded.");
        LastReloadDuration = f.CreateGauge("bastion_config_last_reload_duration_seconds", "How long the last reload took (load, compile, swap, rebind).");
        ConfigGeneration = f.CreateGauge("bastion_config_generation", "Generation of the configuration in force (1 at start, +1 per successful reload).");
        ListenerUp = f.CreateGauge("bastion_listener_up", "1 while the listener accepts connections.",
            new GaugeConfiguration { LabelNames = ["listener", "type"] });
        LogDropped = f.CreateCounter("bastion_access_log_dropped_total", "Access-log events dropped because the writer fell behind or failed.");
        LogWritten = f.CreateCounter("bastion_access_log_writes_total", "Access-log write batches that reached the output.");
        StartTime = f.CreateGauge("bastion_start_time_seconds", "When the gateway started (Unix time).");
        AdminRequests = f.CreateCounter("bastion_admin_requests_total", "Requests to the admin listener.",
            new CounterConfiguration { LabelNames = ["endpoint", "code"] });
        _responses = f.CreateCounter("bastion_responses_total", "HTTP responses to clients (relayed or the gateway's own), by status class.",
            new CounterConfiguration { LabelNames = ["listener", "class"] });
        Upstreams = new UpstreamMetrics(f);
        BeforeCollect(Upstreams.UpdateGauges);
        f.CreateGauge("bastion_build_info", "Always 1; the labels say which build runs.",
            new GaugeConfiguration { LabelNames = ["version", "revision", "runtime"] })
            .WithLabels(Cli.Commands.Version, Cli.Commands.Revision, System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription).Set(1);
        StartTime.SetToCurrentTimeUtc();
        ConfigGeneration.Set(1);
        LastReloadSuccess.Set(1);
        LastReloadTimestamp.SetToCurrentTimeUtc();
    }

    ListenerSet L(string listener)
    {
        int i = SlotOf(listener, _listenerSlots.Length);
        if (_listenerSlots[i] is { } hit && ReferenceEquals(hit.Listener, listener)) return hit.Value;
        // TryGetValue first: the factory lambda captures `this`, so GetOrAdd alone allocates a delegate per call (per relayed chunk).
        var slot = _perListener.TryGetValue(listener, out var found) ? found : _perListener.GetOrAdd(listener, l => new Slot<ListenerSet>(l, "", default, "",
            new ListenerSet(_active.WithLabels(l), _connections.WithLabels(l), _bytes.WithLabels(l, "in"), _bytes.WithLabels(l, "out"),
                _upstreamLatency.WithLabels(l), _authFailures.WithLabels(l))));
        if (slot.For(listener, "", "") is var mine && mine != slot) _perListener[listener] = slot = mine;
        _listenerSlots[i] = slot;
        return slot.Value;
    }

    public void Decision(string listener, string type, Configuration.Verdict verdict, string rule)
    {
        int i = (SlotOf(rule, _decisionSlots.Length) + SlotOf(listener, _decisionSlots.Length)) & (_decisionSlots.Length - 1);
        if (_decisionSlots[i] is { } hit && ReferenceEquals(hit.Rule, rule) && ReferenceEquals(hit.Listener, listener) && ReferenceEquals(hit.Type, type)
            && hit.Verdict == verdict)
        {
            hit.Value.Inc();
            return;
        }
        var key = (listener, type, verdict == Configuration.Verdict.Allow ? "allow" : "deny", rule);
        // TryGetValue first, as in L(): the factory captures `this` (a delegate per request otherwise).
        if (!_decisionChildren.TryGetValue(key, out var slot))
            slot = _decisionChildren.GetOrAdd(key, k => new Slot<Counter.Child>(k.Item1, k.Item2,
                k.Item3 == "allow" ? Configuration.Verdict.Allow : Configuration.Verdict.Deny, k.Item4, _decisions.WithLabels(k.Item1, k.Item2, k.Item3, k.Item4)));
        if (slot.For(listener, type, rule) is var mine && mine != slot) _decisionChildren[key] = slot = mine;
        _decisionSlots[i] = slot;
        slot.Value.Inc();
    }

    public void ConnectionOpened(string listener)
    {
        var l = L(listener);
        l.Active.Inc();
        l.Total.Inc();
    }

    public void ConnectionClosed(string listener) => L(listener).Active.Dec();

    public void Bytes(string listener, long fromClient, long toClient)
    {
        var l = L(listener);
        if (fromClient > 0) l.In.Inc(fromClient);
        if (toClient > 0) l.Out.Inc(toClient);
    }

    public void UpstreamLatency(string listener, TimeSpan t) => L(listener).Latency.Observe(t.TotalSeconds);

    public void AuthFailure(string listener) => L(listener).Auth.Inc();

    /// <summary>An HTTP response to a client, counted by class (1xx to 5xx).</summary>
    public void Response(string listener, int status)
    {
        if (status is < 100 or > 599) return;
        int i = SlotOf(listener, _responseSlots.Length);
        Counter.Child[] c;
        if (_responseSlots[i] is { } hit && ReferenceEquals(hit.Listener, listener)) c = hit.Value;
        else
        {
            if (!_responseClasses.TryGetValue(listener, out var slot))
                slot = _responseClasses.GetOrAdd(listener, l => new Slot<Counter.Child[]>(l, "", default, "",
                    [.. new[] { "1xx", "2xx", "3xx", "4xx", "5xx" }.Select(k => _responses.WithLabels(l, k))]));
            if (slot.For(listener, "", "") is var mine && mine != slot) _responseClasses[listener] = slot = mine;
            _responseSlots[i] = slot;
            c = slot.Value;
        }
        c[status / 100 - 1].Inc();
    }

    /// <summary>A listener's responses by class (index 0 = 1xx), for /api/stats and the dashboard.</summary>
    public long[] Responses(string listener) =>
        _responseClasses.TryGetValue(listener, out var c) ? [.. c.Value.Select(x => (long)x.Value)] : new long[5];

    public void TlsMinted(string listener, TimeSpan t) => _tlsMint.WithLabels(listener).Observe(t.TotalSeconds);

    public void TlsTunnel(string listener, string mode) =>
        _tlsChildren.GetOrAdd((listener, mode), k => _tlsTunnels.WithLabels(k.Item1, k.Item2)).Inc();

    /// <summary>A listener's tunnels by mode (inspected, spliced, refused, client_refused), for /api/stats and the dashboard.</summary>
    public IReadOnlyDictionary<string, long> TlsTunnels(string listener)
    {
        var d = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (k, c) in _tlsChildren)
            if (k.Item1 == listener) d[k.Item2] = (long)c.Value;
        return d;
    }

    /// <summary>Process metrics (CPU, memory, GC) for the admin listener; registered once per registry.</summary>
    public void EnableProcessMetrics()
    {
        if (Interlocked.Exchange(ref _processMetrics, 1) != 0) return;
        // Our own small set rather than prometheus-net's DotNetStats, which re-reads /proc through
        // Process.Refresh on every scrape and made a scrape four times dearer.
        var f = Prometheus.Metrics.WithCustomRegistry(Registry);
        var cpu = f.CreateCounter("process_cpu_seconds_total", "CPU time used by the process (user and system).");
        var rss = f.CreateGauge("process_resident_memory_bytes", "Resident memory of the process.");
        var start = f.CreateGauge("process_start_time_seconds", "When the process started (Unix time).");
        var heap = f.CreateGauge("dotnet_gc_heap_bytes", "Bytes in the managed heap.");
        var gcs = f.CreateCounter("dotnet_gc_collections_total", "Garbage collections by generation.",
            new CounterConfiguration { LabelNames = ["generation"] });
        var threads = f.CreateGauge("dotnet_threadpool_threads", "Thread-pool threads.");
        var queue = f.CreateGauge("dotnet_threadpool_queue_length", "Work items waiting for a thread-pool thread.");
        var fds = f.CreateGauge("process_open_fds", "Open file descriptors (sockets included).");
        var maxFds = f.CreateGauge("process_max_fds", "The process's limit on open file descriptors (RLIMIT_NOFILE).");
        if (MaxOpenFiles() is { } max) maxFds.Set(max);
        start.Set(new DateTimeOffset(System.Diagnostics.Process.GetCurrentProcess().StartTime.ToUniversalTime()).ToUnixTimeMilliseconds() / 1000.0);
        var gen = new[] { gcs.WithLabels("0"), gcs.WithLabels("1"), gcs.WithLabels("2") };
        BeforeCollect(() =>
        {
            cpu.IncTo(Environment.CpuUsage.TotalTime.TotalSeconds);
            rss.Set(Environment.WorkingSet);
            heap.Set(GC.GetTotalMemory(false));
            for (int g = 0; g < gen.Length; g++) gen[g].IncTo(GC.CollectionCount(g));
            threads.Set(ThreadPool.ThreadCount);
            queue.Set(ThreadPool.PendingWorkItemCount);
            if (OpenFiles() is { } open) fds.Set(open);
        });
    }

    /// <summary>Entries of /proc/self/fd (Linux); null elsewhere.</summary>
    static int? OpenFiles()
    {
        try
        {
            int n = 0;
            foreach (var _ in Directory.EnumerateFileSystemEntries("/proc/self/fd")) n++;
            return n;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>The soft limit in /proc/self/limits ("Max open files  1024  524288  files").</summary>
    static double? MaxOpenFiles()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/limits"))
            {
                if (!line.StartsWith("Max open files", StringComparison.Ordinal)) continue;
                var soft = line["Max open files".Length..].TrimStart();
                int end = soft.IndexOf(' ');
                return double.TryParse(end < 0 ? soft : soft[..end], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : null;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>Runs <paramref name="update"/> before each scrape: gauges that mirror state rather than count events.</summary>
    public void BeforeCollect(Action update) => Registry.AddBeforeCollectCallback(update);

    /// <summary>Counters of one listener, read back for /api/stats and the dashboard.</summary>
    public readonly record struct ListenerCounters(long Active, long Accepted, long BytesIn, long BytesOut, long AuthFailures, long Allowed, long Denied);

    public ListenerCounters Counters(string listener)
    {
        long allowed = 0, denied = 0;
        foreach (var (k, c) in _decisionChildren)
        {
            if (k.Item1 != listener) continue;
            if (k.Item3 == "allow") allowed += (long)c.Value.Value;
            else if (k.Item3 == "deny") denied += (long)c.Value.Value;
        }
        if (!_perListener.TryGetValue(listener, out var l)) return new(0, 0, 0, 0, 0, allowed, denied);
        var s = l.Value;
        return new((long)s.Active.Value, (long)s.Total.Value, (long)s.In.Value, (long)s.Out.Value, (long)s.Auth.Value, allowed, denied);
    }

    /// <summary>Every listener that has counted anything (including ones a reload removed).</summary>
    public IEnumerable<string> CountedListeners =>
        _perListener.Keys.Concat(_decisionChildren.Keys.Select(k => k.Item1)).Distinct(StringComparer.Ordinal);

    /// <summary>Decisions summed over every listener, by verdict and by rule.</summary>
    public IEnumerable<(string Listener, string Verdict, string Rule, long Count)> DecisionCounts =>
        _decisionChildren.Select(kv => (kv.Key.Item1, kv.Key.Item3, kv.Key.Item4, (long)kv.Value.Value.Value));

    public async Task<string> ExportAsync()
    {
        using var ms = new MemoryStream();
        await Registry.CollectAndExportAsTextAsync(ms).ConfigureAwait(false);
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }
}
