using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;

namespace Bastion.Protocols.HttpReverse;

/// <summary>
/// Per-client token buckets (`limits: { rate, burst }`) keyed by source IP. The table is bounded: when it fills,
/// buckets that have refilled completely (idle clients) are dropped, and if that is not enough the table is
/// cleared, which forgets limits for a moment rather than growing without end under a spoofed-source flood.
/// </summary>
public sealed class RateLimiter(double rate, int burst, int maxClients = 100_000)
{
    public double Rate { get; } = rate;
    public int Burst { get; } = burst;
    readonly ConcurrentDictionary<IPAddress, Bucket> _buckets = new();
    readonly double _ticksPerToken = Stopwatch.Frequency / rate;
    int _pruning;

    sealed class Bucket(double tokens, long at)
    {
        public double Tokens = tokens;
        public long At = at;
    }

    public int Clients => _buckets.Count;

    /// <summary>Takes one token for <paramref name="ip"/>; when none is left, says how many seconds until one is.</summary>
    public bool TryTake(IPAddress ip, out int retryAfterSeconds)
    {
        retryAfterSeconds = 0;
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        long now = Stopwatch.GetTimestamp();
        if (!_buckets.TryGetValue(ip, out var b))
        {
            if (_buckets.Count >= maxClients) Prune(now);
            b = _buckets.GetOrAdd(ip, static (_, s) => new Bucket(s.burst, s.now), (burst: (double)Burst, now));
        }
        lock (b)
        {
            double tokens = Math.Min(Burst, b.Tokens + (now - b.At) / _ticksPerToken);
            b.At = now;
            if (tokens >= 1)
            {
                b.Tokens = tokens - 1;
                return true;
            }
            b.Tokens = tokens;
            retryAfterSeconds = Math.Max(1, (int)Math.Ceiling((1 - tokens) / Rate));
            return false;
        }
    }

    void Prune(long now)
    {
        if (Interlocked.Exchange(ref _pruning, 1) == 1) return;
        try
        {
            foreach (var (ip, b) in _buckets)
            {
                bool full;
                lock (b) full = b.Tokens + (now - b.At) / _ticksPerToken >= Burst;
                if (full) _buckets.TryRemove(ip, out _);
            }
            if (_buckets.Count >= maxClients) _buckets.Clear();
        }
        finally { Volatile.Write(ref _pruning, 0); }
    }
}
