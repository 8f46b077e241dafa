using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Gateway;

/// <summary>
/// Everything the gateway needs to know about one listener type, in one place: its name, what its configuration
/// must satisfy, which policy attributes it supplies, how `bastion explain` turns a REQUEST into attributes (with
/// the code the live session uses), how it decides, and how to create it. Adding a listener type is a folder with a
/// descriptor in it and one line in <see cref="ListenerDescriptors.All"/>.
/// </summary>
/// <remarks>
/// The YAML of a listener is parsed by <see cref="ConfigLoader"/> into <see cref="ListenerConfig"/> (every type's
/// keys are known there so that unknown keys are errors); the descriptor validates what is its own.
/// </remarks>
public interface IListenerDescriptor
{
    ListenerType Type { get; }

    /// <summary>The `type:` value: http-proxy, socks5...</summary>
    string Name { get; }

    /// <summary>Policy attributes this type supplies (SPEC 2.1); a rule asking about others can never match.</summary>
    IReadOnlySet<string> Attributes { get; }

    /// <summary>True when every session has a user even without `authenticate:` (FTP's USER).</summary>
    bool AlwaysHasUser => false;

    /// <summary>Listener keys only this type may use: set on another type, they are an error.</summary>
    IReadOnlyList<OwnKey> OwnKeys => [];

    /// <summary>Checks of this type's configuration beyond the common ones; report with <paramref name="error"/>.</summary>
    void Validate(BastionConfig root, ListenerConfig listener, Action<SourcePos, string> error);

    /// <summary>
    /// Fills what a live session would supply for REQUEST written in the listener's terms (`GET http://h/p`,
    /// `CONNECT h:443`, `h:port`, `RCPT TO:&lt;a@b&gt;`). Source and user are set by the caller.
    /// </summary>
    bool TryExplain(string request, ListenerConfig listener, Runtime runtime, RequestAttributes a, out string? error);

    /// <summary>The decision on a request, as the live session makes it (policy plus the type's own rules).</summary>
    Decision Decide(CompiledPolicy policy, RequestAttributes a, PolicyTrace? trace = null) => policy.Evaluate(a, trace);

    /// <summary>
    /// False for types that decide once, with `size` part of the request (smtp: the message at end of data); true
    /// when response rules judge a response head later (http).
    /// </summary>
    bool HasResponsePhase => true;

    IGatewayListener Create(ListenerContext ctx);
}

/// <summary>A listener key one type owns: <paramref name="IsSet"/> says whether a listener uses it, <paramref name="Message"/> what to say.</summary>
public sealed record OwnKey(string Key, Func<ListenerConfig, bool> IsSet, string Message);
