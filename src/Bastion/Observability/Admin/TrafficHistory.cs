using Bastion.Hosting;

namespace Bastion.Observability.Admin;

/// <summary>One second of traffic: what happened during it, and how many connections were open at its end.</summary>
public readonly record struct TrafficSample(long UnixMs, long BytesIn, long BytesOut, long Allowed, long Denied, int Active);

/// <summary>
/// The dashboard's "traffic over the last minutes": once a second, the gateway-wide totals are read from the
/// metrics and the increments kept in a ring, so that a page opened now still shows the past ten minutes.
/// </summary>
public sealed class TrafficHistory(GatewayHost host, int capacity) : IDisposable
{
    readonly TrafficSample[] _ring = new TrafficSample[capacity];
    int _next;
    int _count;
    (long In, long Out, long Allow, long Deny) _last;
    Timer? _timer;

    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    public void Start()
    {
        _last = Totals();
        _timer = new Timer(_ => Sample(), null, Interval, Interval);
    }

    (long In, long Out, long Allow, long Deny) Totals()
    {
        long i = 0, o = 0, a = 0, d = 0;
        foreach (var name in host.Metrics.CountedListeners)
        {
            var c = host.Metrics.Counters(name);
            i += c.BytesIn;
            o += c.BytesOut;
            a += c.Allowed;
            d += c.Denied;
        }
        return (i, o, a, d);
    }

    /// <summary>Takes one sample now (the timer's tick; tests call it to avoid waiting on the clock).</summary>
    long _lastMs;

    public void Sample()
    {
        lock (_ring)
        {
            var now = Totals();
            // Strictly increasing times: clients fetch "since" the last time they saw, so a tie would be lost.
            var t = Math.Max(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), _lastMs + 1);
            _lastMs = t;
            var s = new TrafficSample(t, now.In - _last.In, now.Out - _last.Out,
                now.Allow - _last.Allow, now.Deny - _last.Deny, host.Connections.Count);
            _last = now;
            _ring[_next] = s;
            _next = (_next + 1) % _ring.Length;
            if (_count < _ring.Length) _count++;
        }
    }

    /// <summary>Samples newer than <paramref name="sinceUnixMs"/>, oldest first.</summary>
    public List<TrafficSample> Since(long sinceUnixMs)
    {
        var list = new List<TrafficSample>(_count);
        lock (_ring)
        {
            int start = (_next - _count + _ring.Length) % _ring.Length;
            for (int k = 0; k < _count; k++)
            {
                var s = _ring[(start + k) % _ring.Length];
                if (s.UnixMs > sinceUnixMs) list.Add(s);
            }
        }
        return list;
    }

    public void Dispose() => _timer?.Dispose();
}
