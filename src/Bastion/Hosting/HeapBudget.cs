namespace Bastion.Hosting;

/// <summary>
/// Keeps the young generation small while the gateway runs. .NET sizes its gen0 budget from the CPU's last-level
/// cache: on a server with a large L3 (260 MiB on the benchmark machine) that is ~130 MiB, so a process that
/// allocates even a few hundred bytes per request grows to that much resident memory before its first collection.
/// The runtime's own knob (<c>DOTNET_GCgen0size</c>) is read from the environment only, not from
/// runtimeconfig.json, so it cannot ship with the build; this does the same from inside: twenty times a second, when
/// more than <see cref="Budget"/> has been allocated since the last gen0 collection, it asks for one. A gen0
/// collection of a gateway (few survivors) takes 0.1-0.3 ms; at full load that is a few per second. An operator
/// who sets <c>DOTNET_GCgen0size</c> (or <c>DOTNET_GCgen0MaxBudget</c>) gets the runtime's behaviour instead.
/// </summary>
public sealed class HeapBudget : IDisposable
{
    /// <summary>Bytes allocated between gen0 collections, at most (plus what one period allocates), with few connections.</summary>
    public const long Budget = 2 << 20;
    /// <summary>
    /// More budget per open connection: what the requests in flight allocated is alive at a collection and gets
    /// promoted. With 500 connections and a fixed 2 MiB, a third of every gen0 survived into gen1, where it died
    /// (gen1 grew to 44 MiB of mostly garbage, and the copying was the CPU that 500 connections lost).
    /// </summary>
    public const long PerConnection = 16 << 10;
    /// <summary>Gen1 past this (promoted requests that died since) is collected, rather than left to the runtime's large budget.</summary>
    public const long Gen1Limit = 16 << 20;
    const int PeriodMs = 50;

    readonly Timer _timer;
    readonly Func<int>? _connections;
    long _mark;
    int _gen0;

    HeapBudget(Func<int>? connections)
    {
        _connections = connections;
        _timer = new Timer(_ => Check(), null, PeriodMs, PeriodMs);
    }

    /// <summary>
    /// Gives back what starting up used (configuration, policy compilation, listeners: a few MiB that would stay
    /// resident) and starts the budget, unless the runtime's own gen0 settings are in the environment.
    /// </summary>
    /// <param name="connections">the open connections now (the budget grows with them).</param>
    public static HeapBudget? Start(Func<int>? connections = null)
    {
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        return Set("GCgen0size") || Set("GCgen0MaxBudget") || Set("GCGen0MaxBudget") ? null : new HeapBudget(connections);
    }

    static bool Set(string knob) =>
        !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DOTNET_" + knob))
        || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("COMPlus_" + knob));

    /// <summary>Gen0 collections this asked for.</summary>
    public long Collections { get; private set; }

    void Check()
    {
        long allocated = GC.GetTotalAllocatedBytes(precise: false);
        int gen0 = GC.CollectionCount(0);
        if (gen0 != _gen0)
        {
            // The runtime collected on its own since the last look: count from here.
            _gen0 = gen0;
            _mark = allocated;
            return;
        }
        long budget = Math.Max(Budget, (_connections?.Invoke() ?? 0) * PerConnection);
        if (allocated - _mark < budget) return;
        GC.Collect(0, GCCollectionMode.Forced, blocking: true);
        Collections++;
        if (GC.GetGCMemoryInfo(GCKind.Ephemeral).GenerationInfo[1].SizeAfterBytes > Gen1Limit)
        {
            GC.Collect(1, GCCollectionMode.Forced, blocking: true);
            Gen1Collections++;
        }
        _gen0 = GC.CollectionCount(0);
        _mark = allocated;
    }

    /// <summary>Gen1 collections this asked for.</summary>
    public long Gen1Collections { get; private set; }

    public void Dispose() => _timer.Dispose();
}
