using System.Collections.Concurrent;
using Prometheus;

namespace Bastion.Observability;

/// <summary>
/// Per-target metrics of the configured upstreams (http-reverse groups, tcp and ftp upstreams): requests, responses
/// by status class, errors by kind, latency, up/down. Each upstream set of a listener holds a <see cref="GroupMeter"/>
/// (registered while it is in force) and each target a <see cref="TargetMeter"/> with its label children cached, so
/// counting is a few interlocked adds. The same children serve a set rebuilt by a reload: counters stay monotonic.
/// </summary>
public sealed class UpstreamMetrics
{
    static readonly string[] Classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    /// <summary>Error kinds: could not connect; no answer in time; the connection broke or the answer was malformed.</summary>
    public static readonly string[] ErrorKinds = ["connect", "timeout", "failed"];

    readonly Counter _requests;
    readonly Counter _responses;
    readonly Counter _errors;
    readonly Counter _unavailable;
    readonly Histogram _latency;
    readonly Gauge _up;
    readonly ConcurrentDictionary<GroupMeter, byte> _live = new();
    readonly HashSet<(string, string, string)> _upShown = [];

    internal UpstreamMetrics(MetricFactory f)
    {
        string[] t = ["listener", "upstream", "target"];
        _requests = f.CreateCounter("bastion_upstream_requests_total", "Requests (http) or connections (tcp, ftp) sent to an upstream target, including those that could not connect.",
            new CounterConfiguration { LabelNames = t });
        _responses = f.CreateCounter("bastion_upstream_responses_total", "Responses an upstream target gave, by status class.",
            new CounterConfiguration { LabelNames = [.. t, "class"] });
        _errors = f.CreateCounter("bastion_upstream_errors_total", "Requests an upstream target did not answer: connect (could not connect), timeout (no answer in time), failed (closed, reset or a malformed answer).",
            new CounterConfiguration { LabelNames = [.. t, "kind"] });
        _unavailable = f.CreateCounter("bastion_upstream_unavailable_total", "Requests refused (503) because no target of the upstream was available.",
            new CounterConfiguration { LabelNames = ["listener", "upstream"] });
        _latency = f.CreateHistogram("bastion_upstream_target_latency_seconds", "Per target: time from sending a request to its response head (http), or to connect (tcp, ftp).",
            new HistogramConfiguration { LabelNames = t, Buckets = Histogram.ExponentialBuckets(0.0005, 2, 16) });
        _up = f.CreateGauge("bastion_upstream_up", "1 while the target is in service (active checks pass and passive health has not taken it out).",
            new GaugeConfiguration { LabelNames = t });
    }

    /// <summary>The meter of one upstream set of a listener; <see cref="GroupMeter.Dispose"/> when the set is retired.</summary>
    /// <param name="named">A group under `upstreams:` (else an inline URL or address, which /healthz does not repeat).</param>
    public GroupMeter Group(string listener, string upstream, bool named, IReadOnlyList<(string Label, Func<bool> Up)> targets)
    {
        var g = new GroupMeter(this, listener, upstream, named, [.. targets.Select(t => new TargetMeter(this, listener, upstream, t.Label, t.Up))]);
        _live[g] = 0;
        // Its up gauges exist from now on: the next scrape removes them once no set in force has the target.
        lock (_upShown)
            foreach (var t in targets) _upShown.Add((listener, upstream, t.Label));
        return g;
    }

    /// <summary>The upstream sets in force (listener by listener), for /healthz and the dashboard.</summary>
    public IEnumerable<GroupMeter> Live => _live.Keys.OrderBy(g => g.Listener, StringComparer.Ordinal).ThenBy(g => g.Name, StringComparer.Ordinal);

    internal void Retire(GroupMeter g) => _live.TryRemove(g, out _);

    /// <summary>Before a scrape: the up gauges of the sets in force; targets no longer configured leave the exposition
    /// (an alert on `bastion_upstream_up == 0` must not fire for a target a reload removed).</summary>
    internal void UpdateGauges()
    {
        lock (_upShown)
        {
            var now = new HashSet<(string, string, string)>();
            foreach (var g in _live.Keys)
                foreach (var t in g.Targets)
                {
                    now.Add((g.Listener, g.Name, t.Label));
                    t.UpGauge.Set(t.IsUp() ? 1 : 0);
                }
            foreach (var gone in _upShown.Where(k => !now.Contains(k)).ToList())
                _up.RemoveLabelled(gone.Item1, gone.Item2, gone.Item3);
            _upShown.Clear();
            _upShown.UnionWith(now);
        }
    }

    /// <summary>One target: its label children, and readable totals for the dashboard.</summary>
    public sealed class TargetMeter
    {
        readonly Counter.Child _requests;
        readonly Counter.Child[] _classes;
        readonly Counter.Child[] _errors;
        readonly Histogram.Child _latency;
        internal readonly Gauge.Child UpGauge;
        internal readonly Func<bool> IsUp;
        internal GroupMeter Group = null!;

        internal TargetMeter(UpstreamMetrics m, string listener, string upstream, string label, Func<bool> up)
        {
            Label = label;
            IsUp = up;
            _requests = m._requests.WithLabels(listener, upstream, label);
            _classes = [.. Classes.Select(c => m._responses.WithLabels(listener, upstream, label, c))];
            _errors = [.. ErrorKinds.Select(k => m._errors.WithLabels(listener, upstream, label, k))];
            _latency = m._latency.WithLabels(listener, upstream, label);
            UpGauge = m._up.WithLabels(listener, upstream, label);
        }

        /// <summary>How the target is named in the metrics and the log: `http://h:p` (http), `h:p` (tcp, ftp).</summary>
        public string Label { get; }
        public bool Up => IsUp();

        public void Request() => _requests.Inc();

        /// <summary>A response head from the target: its class, and (5xx) an error for the group's recent error rate.</summary>
        public void Response(int status)
        {
            if (status is < 100 or > 599) return;
            _classes[status / 100 - 1].Inc();
            Group.Window.Add(status >= 500);
        }

        /// <summary>No answer: <paramref name="kind"/> is an index into <see cref="ErrorKinds"/>.</summary>
        public void Error(int kind)
        {
            _errors[kind].Inc();
            Group.Window.Add(true);
        }

        public void Latency(TimeSpan t) => _latency.Observe(t.TotalSeconds);

        public long Requests => (long)_requests.Value;
        public long Responses(int cls) => (long)_classes[cls - 1].Value;
        public long Errors(int kind) => (long)_errors[kind].Value;
        public long LatencyCount => _latency.Count;
        public double LatencySum => _latency.Sum;
    }

    /// <summary>An upstream set as one listener uses it: its targets' meters and its recent error rate.</summary>
    public sealed class GroupMeter : IDisposable
    {
        readonly UpstreamMetrics _owner;
        readonly Counter.Child _unavailable;

        internal GroupMeter(UpstreamMetrics owner, string listener, string name, bool named, TargetMeter[] targets)
        {
            _owner = owner;
            Named = named;
            Listener = listener;
            Name = name;
            Targets = targets;
            foreach (var t in targets) t.Group = this;
            _unavailable = owner._unavailable.WithLabels(listener, name);
        }

        public string Listener { get; }
        public string Name { get; }
        /// <summary>Defined under `upstreams:`; otherwise <see cref="Name"/> is an address.</summary>
        public bool Named { get; }
        public TargetMeter[] Targets { get; }
        /// <summary>Requests and errors of the last 30 to 60 seconds.</summary>
        public RecentWindow Window { get; } = new();

        /// <summary>A request refused because no target was available (the 503 "no healthy upstream").</summary>
        public void Unavailable()
        {
            _unavailable.Inc();
            Window.Add(true);
        }

        public long UnavailableCount => (long)_unavailable.Value;

        /// <summary>Recent error rate that makes a group degraded (with at least <see cref="MinRecent"/> requests to judge by).</summary>
        public const double DegradedErrorRate = 0.2;
        public const int MinRecent = 10;

        /// <summary>What is wrong with the group now, for /healthz and the dashboard; null when nothing is.</summary>
        public string? Trouble()
        {
            int up = Targets.Count(t => t.Up);
            if (up < Targets.Length) return $"{up} of {Targets.Length} target(s) up";
            var (total, errors) = Window.Recent();
            if (total >= MinRecent && errors >= total * DegradedErrorRate)
                return $"{errors} of {total} recent requests failed";
            return null;
        }

        public void Dispose() => _owner.Retire(this);
    }
}

/// <summary>
/// Counts of two consecutive 30-second buckets (the current and the previous one): "recently" without a timer.
/// A count racing a bucket change may land in either bucket; fine for an error rate.
/// </summary>
public sealed class RecentWindow
{
    const long BucketMs = 30_000;
    readonly object _rotate = new();
    long _bucket = Environment.TickCount64 / BucketMs;
    long _total, _errors, _prevTotal, _prevErrors;

    public void Add(bool error)
    {
        Rotate();
        Interlocked.Increment(ref _total);
        if (error) Interlocked.Increment(ref _errors);
    }

    /// <summary>Requests and errors in the current and the previous bucket.</summary>
    public (long Total, long Errors) Recent()
    {
        Rotate();
        return (Interlocked.Read(ref _total) + Interlocked.Read(ref _prevTotal), Interlocked.Read(ref _errors) + Interlocked.Read(ref _prevErrors));
    }

    void Rotate()
    {
        long b = Environment.TickCount64 / BucketMs;
        if (b == Volatile.Read(ref _bucket)) return;
        lock (_rotate)
        {
            if (b == _bucket) return;
            bool adjacent = b == _bucket + 1;
            Interlocked.Exchange(ref _prevTotal, adjacent ? Interlocked.Exchange(ref _total, 0) : 0);
            Interlocked.Exchange(ref _prevErrors, adjacent ? Interlocked.Exchange(ref _errors, 0) : 0);
            if (!adjacent)
            {
                Interlocked.Exchange(ref _total, 0);
                Interlocked.Exchange(ref _errors, 0);
            }
            Volatile.Write(ref _bucket, b);
        }
    }
}
