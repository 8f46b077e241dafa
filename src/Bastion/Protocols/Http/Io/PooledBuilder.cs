using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;

namespace Bastion.Protocols.Http.Io;

/// <summary>
/// Async method builder for the request path's <see cref="ValueTask{TResult}"/> methods: when a method has to wait, its
/// state machine goes into a box taken from a per-thread pool and goes back when the caller takes the result.
/// .NET's <see cref="PoolingAsyncValueTaskMethodBuilder{TResult}"/> keeps one box per thread and one per core, so with
/// 50 requests waiting for their upstreams nearly every box was a new allocation (~600 bytes a request). The
/// continuations run on the socket engine's thread (inline completions), so a box is mostly rented and returned
/// there, and its pool holds as many boxes as requests wait at once (up to <see cref="PoolSize"/> per method).
/// </summary>
public struct PooledBuilder<TResult>
{
    /// <summary>Boxes kept per async method (beyond a few per thread).</summary>
    internal const int PoolSize = 1024;

    IPooledBox? _box;
    TResult _result;
    Exception? _error;

    internal readonly IPooledBox? Box => _box;
    internal readonly Exception? Error => _error;

    public static PooledBuilder<TResult> Create() => default;

    public readonly ValueTask<TResult> Task =>
        _box is { } b ? new ValueTask<TResult>((IValueTaskSource<TResult>)b, b.Version)
        : _error is not null ? ValueTask.FromException<TResult>(_error)
        : new ValueTask<TResult>(_result);

    // Saves and restores the thread's execution context around the first run, as .NET's builders do.
    public readonly void Start<TStateMachine>(ref TStateMachine stateMachine) where TStateMachine : IAsyncStateMachine =>
        AsyncValueTaskMethodBuilder.Create().Start(ref stateMachine);

    public readonly void SetStateMachine(IAsyncStateMachine stateMachine) { }

    public void SetResult(TResult result)
    {
        if (_box is null) _result = result;
        else ((IResultBox<TResult>)_box).SetResult(result);
    }

    public void SetException(Exception exception)
    {
        if (_box is null) _error = exception;
        else _box.SetException(exception);
    }

    public void AwaitOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : INotifyCompletion where TStateMachine : IAsyncStateMachine =>
        awaiter.OnCompleted(BoxFor(ref stateMachine).MoveNextAction);

    public void AwaitUnsafeOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : ICriticalNotifyCompletion where TStateMachine : IAsyncStateMachine =>
        awaiter.UnsafeOnCompleted(BoxFor(ref stateMachine).MoveNextAction);

    PooledBox<TStateMachine, TResult> BoxFor<TStateMachine>(ref TStateMachine stateMachine) where TStateMachine : IAsyncStateMachine
    {
        var box = _box as PooledBox<TStateMachine, TResult>;
        if (box is null)
        {
            box = PooledBox<TStateMachine, TResult>.Rent();
            // Set before the copy: the box's copy of the state machine holds this builder.
            _box = box;
            box.StateMachine = stateMachine;
        }
        return box;
    }
}

/// <summary>The same for methods that return a plain <see cref="ValueTask"/>.</summary>
public struct PooledBuilder
{
    PooledBuilder<bool> _inner;

    public static PooledBuilder Create() => default;

    public readonly ValueTask Task =>
        _inner.Box is { } b ? new ValueTask(b, b.Version)
        : _inner.Error is { } e ? ValueTask.FromException(e)
        : ValueTask.CompletedTask;

    // Saves and restores the thread's execution context around the first run, as .NET's builders do.
    public readonly void Start<TStateMachine>(ref TStateMachine stateMachine) where TStateMachine : IAsyncStateMachine =>
        AsyncValueTaskMethodBuilder.Create().Start(ref stateMachine);

    public readonly void SetStateMachine(IAsyncStateMachine stateMachine) { }
    public void SetResult() => _inner.SetResult(true);
    public void SetException(Exception exception) => _inner.SetException(exception);

    public void AwaitOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : INotifyCompletion where TStateMachine : IAsyncStateMachine =>
        _inner.AwaitOnCompleted(ref awaiter, ref stateMachine);

    public void AwaitUnsafeOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : ICriticalNotifyCompletion where TStateMachine : IAsyncStateMachine =>
        _inner.AwaitUnsafeOnCompleted(ref awaiter, ref stateMachine);
}

interface IPooledBox : IValueTaskSource
{
    short Version { get; }
    void SetException(Exception e);
}

interface IResultBox<TResult> : IPooledBox
{
    void SetResult(TResult result);
}

sealed class PooledBox<TStateMachine, TResult> : IResultBox<TResult>, IValueTaskSource<TResult>, IValueTaskSource
    where TStateMachine : IAsyncStateMachine
{
    // Each thread keeps a few boxes; the rest go to a shared stack, so that boxes returned on one thread (where a
    // result was taken) serve the thread that rents (where a method waits).
    [ThreadStatic] static PooledBox<TStateMachine, TResult>?[]? t_pool;
    [ThreadStatic] static int t_count;
    const int LocalSize = 32;
    static readonly PooledBox<TStateMachine, TResult>?[] Shared = new PooledBox<TStateMachine, TResult>?[PooledBuilder<TResult>.PoolSize];
    static int s_count;
    static readonly Lock SharedLock = new();

    public TStateMachine StateMachine = default!;
    ManualResetValueTaskSourceCore<TResult> _core;
    public readonly Action MoveNextAction;

    PooledBox() => MoveNextAction = MoveNext;

    public static PooledBox<TStateMachine, TResult> Rent()
    {
        var pool = t_pool;
        if (pool is not null && t_count > 0)
        {
            var box = pool[--t_count]!;
            pool[t_count] = null;
            return box;
        }
        if (Volatile.Read(ref s_count) > 0)
        {
            lock (SharedLock)
            {
                if (s_count > 0)
                {
                    var box = Shared[--s_count]!;
                    Shared[s_count] = null;
                    return box;
                }
            }
        }
        return new PooledBox<TStateMachine, TResult>();
    }

    void Return()
    {
        _core.Reset();
        StateMachine = default!;
        var pool = t_pool ??= new PooledBox<TStateMachine, TResult>?[LocalSize];
        if (t_count < pool.Length)
        {
            pool[t_count++] = this;
            return;
        }
        lock (SharedLock)
        {
            if (s_count < Shared.Length) Shared[s_count++] = this;
        }
    }

    public short Version => _core.Version;

    // The continuation runs in the resuming thread's context and whatever it sets there is undone afterwards (no leak
    // to the next user of the box or of the loop thread). The awaiting point's context is not flowed, unlike .NET's
    // builders: nothing on the request path reads an AsyncLocal, and code that does must not use this builder.
    void MoveNext() => AsyncValueTaskMethodBuilder.Create().Start(ref StateMachine);

    public void SetResult(TResult result) => _core.SetResult(result);
    public void SetException(Exception e) => _core.SetException(e);

    public TResult GetResult(short token)
    {
        try { return _core.GetResult(token); }
        finally { Return(); }
    }

    void IValueTaskSource.GetResult(short token) => GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
