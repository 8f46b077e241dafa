using Bastion.Configuration;

namespace Bastion.Gateway;

/// <summary>
/// An `upstreams:` group (or a single upstream) as every gateway uses it: targets, the balancing strategy,
/// passive health (connect failures, repeated 5xx) and active checks with a protocol's own probe (an HTTP GET, a
/// TCP connect). The reverse proxy and tcp use it; what a probe or a connection is stays with the protocol.
/// </summary>
public sealed class UpstreamSet : IDisposable
{
    /// <summary>Consecutive 5xx answers that take a target out when no `health.fails` says otherwise.</summary>
    const int Passive5xxThreshold = 3;
    readonly IBalancer _balancer;
    readonly TimeSpan _passiveDown;
    readonly CancellationTokenSource _stop = new();
    long _rounds;

    /// <param name="prefixes">Targets as URLs (`http://h:p`, `tcp://h:p`).</param>
    /// <param name="passiveDown">How long a failed target sits out.</param>
    /// <param name="probe">The active health check of one target; null for none.</param>
    public UpstreamSet(string name, UpstreamConfig? cfg, IEnumerable<string> prefixes, TimeSpan passiveDown,
        Func<UpstreamTarget, HealthConfig, CancellationToken, Task<bool>>? probe)
    {
        Name = name;
        Config = cfg;
        Targets = [.. prefixes.Select(p => new UpstreamTarget(p))];
        _balancer = Balancers.Create(cfg?.Balance);
        _passiveDown = passiveDown;
        if (probe is not null) StartHealthChecks(probe);
    }

    /// <summary>
    /// Starts the active checks (when configured). An owner whose probe needs its own fields passes no probe to the
    /// constructor and calls this once it is built: the first probe runs before the constructor would return.
    /// </summary>
    public void StartHealthChecks(Func<UpstreamTarget, HealthConfig, CancellationToken, Task<bool>> probe)
    {
        if (Config?.Health is { } h && Targets.Length > 0) _ = HealthLoop(h, probe, _stop.Token);
    }

    public string Name { get; }
    public UpstreamConfig? Config { get; }
    public UpstreamTarget[] Targets { get; }
    public string Balance => _balancer.Name;

    /// <summary>The target for the next request, or null when every target is out.</summary>
    public UpstreamTarget? Pick()
    {
        var t = Targets;
        if (t.Length == 0) return null;
        if (t.Length == 1) return t[0].Available ? t[0] : null;
        return _balancer.Pick(t);
    }

    /// <summary>
    /// Targets to try in turn for one connection: the balancer's pick, the other available ones, then those that
    /// are out (better a retry than a refusal when every target looks down).
    /// </summary>
    public IEnumerable<UpstreamTarget> FailoverOrder()
    {
        var first = Pick();
        if (first is not null) yield return first;
        foreach (var t in Targets)
            if (t != first && t.Available) yield return t;
        foreach (var t in Targets)
            if (t != first && !t.Available) yield return t;
    }

    public void ConnectFailed(UpstreamTarget t) => t.ConnectFailed(_passiveDown);

    Observability.UpstreamMetrics.GroupMeter? _meter;

    /// <summary>Counts this set's traffic as <paramref name="listener"/>'s (once; a set kept across reloads keeps its meter).</summary>
    public void Meter(Observability.UpstreamMetrics metrics, string listener)
    {
        if (_meter is not null) return;
        _meter = metrics.Group(listener, Name, Config is not null, [.. Targets.Select(t => (t.Label, (Func<bool>)(() => t.Available)))]);
        for (int i = 0; i < Targets.Length; i++) Targets[i].Meter = _meter.Targets[i];
    }

    /// <summary>A request refused because every target was out (the 503 "no healthy upstream").</summary>
    public void Unavailable() => _meter?.Unavailable();

    public void Answered(UpstreamTarget t, int status) =>
        t.Answered(status, Config?.Health?.Fails ?? Passive5xxThreshold, _passiveDown);

    /// <summary>Completed rounds of active checks (tests wait on state, not time).</summary>
    public long HealthRounds => Interlocked.Read(ref _rounds);

    async Task HealthLoop(HealthConfig h, Func<UpstreamTarget, HealthConfig, CancellationToken, Task<bool>> probe, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(h.Interval);
        try
        {
            do
            {
                await Task.WhenAll(Targets.Select(t => CheckOne(t, h, probe, stop))).ConfigureAwait(false);
                Interlocked.Increment(ref _rounds);
            }
            while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false));
        }
        catch (OperationCanceledException) { }
        catch (ObjectDisposedException) { }
    }

    static async Task CheckOne(UpstreamTarget t, HealthConfig h, Func<UpstreamTarget, HealthConfig, CancellationToken, Task<bool>> probe, CancellationToken stop)
    {
        bool ok;
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(stop);
            cts.CancelAfter(h.Timeout);
            ok = await probe(t, h, cts.Token).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Any failure of a probe is a failed check: an exception that ended the loop would freeze the target's state.
            if (stop.IsCancellationRequested) return;
            ok = false;
        }
        t.ActiveResult(ok, h);
    }

    /// <summary>True when a new configuration would build the same set (health state is then kept).</summary>
    public bool SameAs(UpstreamConfig? cfg, IEnumerable<string> prefixes) =>
        Targets.Select(t => t.Prefix).SequenceEqual(prefixes) &&
        (cfg is null) == (Config is null) &&
        (cfg is null || (cfg.Balance == Config!.Balance && SameHealth(cfg.Health, Config.Health)));

    static bool SameHealth(HealthConfig? a, HealthConfig? b) =>
        a is null || b is null ? a is null && b is null : a with { Pos = default } == b with { Pos = default };

    public void Dispose()
    {
        _meter?.Dispose();
        try { _stop.Cancel(); }
        catch (ObjectDisposedException) { }
    }
}
