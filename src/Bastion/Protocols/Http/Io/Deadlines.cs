namespace Bastion.Protocols.Http.Io;

/// <summary>
/// Something with a deadline: a connection waiting for a request head, an upstream waiting for a response. Setting
/// one is a field write per request; <see cref="Deadlines"/> checks every registered one four times a second and
/// calls <see cref="Expired"/> (on a timer thread: it must only flag and shut sockets down).
/// </summary>
public abstract class Expiring
{
    long _at;

    /// <summary>Arms the deadline <paramref name="after"/> from now (non-positive: none).</summary>
    public void ExpireIn(TimeSpan after) =>
        Volatile.Write(ref _at, after > TimeSpan.Zero ? Environment.TickCount64 + (long)after.TotalMilliseconds : 0);

    public void NoDeadline() => Volatile.Write(ref _at, 0);

    internal void Check(long now)
    {
        long at = Volatile.Read(ref _at);
        if (at == 0 || now < at) return;
        if (Interlocked.CompareExchange(ref _at, 0, at) != at) return;
        Expired();
    }

    protected internal abstract void Expired();
}

/// <summary>One timer for every HTTP connection's deadlines.</summary>
public static class Deadlines
{
    const int PeriodMs = 250;
    static readonly HashSet<Expiring> Set = [];
    static Expiring[] _snapshot = [];
    static bool _dirty;
    static readonly Timer Tick = new(_ => Sweep(), null, PeriodMs, PeriodMs);

    public static void Add(Expiring e)
    {
        lock (Set)
        {
            Set.Add(e);
            _dirty = true;
        }
    }

    public static void Remove(Expiring e)
    {
        lock (Set)
        {
            Set.Remove(e);
            _dirty = true;
        }
        GC.KeepAlive(Tick);
    }

    static void Sweep()
    {
        Expiring[] all;
        lock (Set)
        {
            if (_dirty)
            {
                _snapshot = [.. Set];
                _dirty = false;
            }
            all = _snapshot;
        }
        long now = Environment.TickCount64;
        foreach (var e in all)
        {
            try { e.Check(now); }
            catch (Exception ex) { Console.Error.WriteLine($"bastion: deadline handler failed: {ex}"); }
        }
    }
}
