using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Bastion.Identity;

/// <summary>
/// Failed logins throttled per client address (an IPv4 address, an IPv6 /64), so that one client's password
/// guessing neither succeeds fast nor slows anyone else: each address may fail <see cref="Burst"/> times, then
/// once per <see cref="RefillEvery"/>; past that its attempts are refused at once, without hashing. An address
/// also has at most one password check in flight, so a flood of its connections queues behind itself and never
/// fills the shared hashing queue ahead of other clients.
/// </summary>
public sealed class LoginThrottle
{
    public const int Burst = 10;
    public static readonly TimeSpan RefillEvery = TimeSpan.FromSeconds(1);
    const int MaxTracked = 100_000;

    sealed class State
    {
        public readonly SemaphoreSlim Gate = new(1, 1);
        public double Tokens = Burst;
        public long Updated = Environment.TickCount64;
    }

    readonly ConcurrentDictionary<UInt128, State> _states = new();

    /// <summary>Addresses currently tracked (for tests and metrics).</summary>
    public int Tracked => _states.Count;

    static UInt128 Key(IPAddress ip)
    {
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        Span<byte> b = stackalloc byte[16];
        ip.TryWriteBytes(b, out int n);
        if (ip.AddressFamily == AddressFamily.InterNetwork)
            return System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b);
        // One IPv6 client usually holds a whole /64.
        return (UInt128)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(b) << 64 | 1;
    }

    State For(IPAddress ip)
    {
        if (_states.Count >= MaxTracked) Prune();
        return _states.GetOrAdd(Key(ip), static _ => new State());
    }

    /// <summary>Tokens refilled to now; the caller holds the state's lock.</summary>
    static void Refill(State s)
    {
        long now = Environment.TickCount64;
        s.Tokens = Math.Min(Burst, s.Tokens + (now - s.Updated) / RefillEvery.TotalMilliseconds);
        s.Updated = now;
    }

    /// <summary>False when the address has used up its failures: refuse without checking anything.</summary>
    public bool MayTry(IPAddress ip)
    {
        var s = For(ip);
        lock (s)
        {
            Refill(s);
            return s.Tokens >= 1;
        }
    }

    public void Failed(IPAddress ip)
    {
        var s = For(ip);
        lock (s)
        {
            Refill(s);
            s.Tokens = Math.Max(0, s.Tokens - 1);
        }
    }

    /// <summary>Waits for the address's one slot for a password check (the slot is released by disposing).</summary>
    public async ValueTask<IDisposable> EnterAsync(IPAddress ip, CancellationToken ct)
    {
        var s = For(ip);
        await s.Gate.WaitAsync(ct).ConfigureAwait(false);
        return new Slot(s.Gate);
    }

    sealed class Slot(SemaphoreSlim gate) : IDisposable
    {
        int _done;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) gate.Release();
        }
    }

    /// <summary>Forgets addresses with a full allowance and nothing in flight.</summary>
    void Prune()
    {
        foreach (var (k, s) in _states)
        {
            lock (s)
            {
                Refill(s);
                if (s.Tokens >= Burst && s.Gate.CurrentCount == 1) _states.TryRemove(k, out _);
            }
        }
    }
}
