using Bastion.Configuration;

namespace Bastion.Gateway;

/// <summary>One upstream server of a set, with its health as seen by active checks and by traffic.</summary>
public sealed class UpstreamTarget
{
    public UpstreamTarget(string prefix)
    {
        Prefix = prefix;
        Uri = new Uri(prefix);
        Host = Uri.Host.Trim('[', ']');
        Port = Uri.Port;
    }

    /// <summary>Scheme, authority and optional base path, e.g. `http://127.0.0.1:5001` or `tcp://10.0.0.5:5432`.</summary>
    public string Prefix { get; }
    public Uri Uri { get; }
    public string Host { get; }
    public int Port { get; }

    /// <summary>How metrics, the dashboard and the log name it: the URL prefix (http), `host:port` (tcp).</summary>
    public string Label => Uri.Scheme == "tcp" ? ToString() : Prefix;

    /// <summary>Its metrics, when the set is metered (a listener's set in force).</summary>
    public Observability.UpstreamMetrics.TargetMeter? Meter { get; internal set; }

    volatile bool _activeUp = true;
    long _passiveDownUntil;
    int _inFlight;
    int _consecutiveFails, _consecutivePasses, _passiveFails;

    /// <summary>As the active health check last judged it (up until a check says otherwise).</summary>
    public bool ActiveUp => _activeUp;

    /// <summary>Passive health: out after a connect failure or repeated 5xx, until this tick count.</summary>
    public bool PassiveDown => Environment.TickCount64 < Volatile.Read(ref _passiveDownUntil);

    public bool Available => _activeUp && !PassiveDown;

    /// <summary>Requests (http) or connections (tcp) it is serving now: what least-requests and power-of-two compare.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>A request (or connection) goes to this target: in flight, and counted.</summary>
    public void Begin()
    {
        Interlocked.Increment(ref _inFlight);
        Meter?.Request();
    }

    public void End() => Interlocked.Decrement(ref _inFlight);

    /// <summary>host:port, as logs name it.</summary>
    public override string ToString() => new HostPort(Host, Port).ToString();

    internal void ActiveResult(bool ok, HealthConfig h)
    {
        if (ok)
        {
            _consecutiveFails = 0;
            if (!_activeUp && ++_consecutivePasses >= h.Passes)
            {
                _activeUp = true;
                _consecutivePasses = 0;
                Volatile.Write(ref _passiveDownUntil, 0);
            }
        }
        else
        {
            _consecutivePasses = 0;
            if (_activeUp && ++_consecutiveFails >= h.Fails)
            {
                _activeUp = false;
                _consecutiveFails = 0;
            }
        }
    }

    /// <summary>A connection failure takes the target out at once (like nginx max_fails=1).</summary>
    public void ConnectFailed(TimeSpan downFor)
    {
        Meter?.Error(0);
        Volatile.Write(ref _passiveDownUntil, Environment.TickCount64 + (long)downFor.TotalMilliseconds);
        _passiveFails = 0;
    }

    /// <summary>A connection succeeded: passive health forgets earlier failures.</summary>
    public void Connected()
    {
        if (Volatile.Read(ref _passiveDownUntil) != 0) Volatile.Write(ref _passiveDownUntil, 0);
    }

    /// <summary>It took the request but gave no answer: in time (<paramref name="timedOut"/>) or at all.</summary>
    public void Failed(bool timedOut) => Meter?.Error(timedOut ? 1 : 2);

    /// <summary>5xx answers take it out after <paramref name="threshold"/> in a row; any other answer resets the count.</summary>
    public void Answered(int status, int threshold, TimeSpan downFor)
    {
        Meter?.Response(status);
        if (status < 500)
        {
            if (_passiveFails != 0) _passiveFails = 0;
            return;
        }
        if (Interlocked.Increment(ref _passiveFails) >= threshold)
        {
            _passiveFails = 0;
            Volatile.Write(ref _passiveDownUntil, Environment.TickCount64 + (long)downFor.TotalMilliseconds);
        }
    }
}
