using System.Reflection;
using System.Runtime.CompilerServices;
using Bastion.Protocols.Http.Io;

namespace Bastion.Tests.Http1;

/// <summary>
/// PooledBuilder neither captures nor restores the execution context. These tests ask whether an AsyncLocal set inside
/// one pooled async method is seen by code that did not set it: the caller, and the next user of the same pooled box
/// on the same thread (an epoll loop thread runs every connection's continuations, one after another).
/// </summary>
public sealed class PooledBuilderContextTests
{
    static readonly AsyncLocal<string?> Tag = new();

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    static async ValueTask<string?> PooledSeeThenSet(string tag, Task gate)
    {
        var seen = Tag.Value;
        await gate;
        Tag.Value = tag;
        return seen;
    }

    static async ValueTask<string?> PlainSeeThenSet(string tag, Task gate)
    {
        var seen = Tag.Value;
        await gate;
        Tag.Value = tag;
        return seen;
    }

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    static async ValueTask<int> PooledSetThenWait(string tag, Task gate)
    {
        Tag.Value = tag;
        await gate;
        return 1;
    }

    static async ValueTask<int> PlainSetThenWait(string tag, Task gate)
    {
        Tag.Value = tag;
        await gate;
        return 1;
    }

    static object? SourceOf<T>(ValueTask<T> vt) =>
        typeof(ValueTask<T>).GetField("_obj", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(vt);

    /// <summary>Runs <paramref name="body"/> on a thread of its own, as a loop thread: no thread pool resets its context.</summary>
    static T OnLoopThread<T>(Func<T> body)
    {
        T result = default!;
        Exception? error = null;
        var t = new Thread(() =>
        {
            try { result = body(); }
            catch (Exception e) { error = e; }
        });
        t.Start();
        t.Join();
        if (error is not null) throw new InvalidOperationException("loop thread failed", error);
        return result;
    }

    /// <summary>
    /// Two requests on one loop thread, one after the other: the first sets the AsyncLocal in its continuation, the
    /// second (the next user of the same box) looks at it on entry.
    /// </summary>
    static (string? SeenBySecond, string? LeftOnThread, bool SameBox) TwoUsers(Func<string, Task, ValueTask<string?>> method) => OnLoopThread(() =>
    {
        var gate1 = new TaskCompletionSource();
        var first = method("secret-of-the-first", gate1.Task);
        var box1 = SourceOf(first);
        gate1.SetResult(); // the continuation runs inline here, as an edge runs it on the loop thread
        Assert.True(first.IsCompletedSuccessfully);
        Assert.Null(first.Result); // takes the result: the box goes back to this thread's pool
        var left = Tag.Value;

        var gate2 = new TaskCompletionSource();
        var second = method("second", gate2.Task);
        var box2 = SourceOf(second);
        gate2.SetResult();
        return (second.Result, left, box1 is not null && ReferenceEquals(box1, box2));
    });

    [Fact]
    public void Plain_builder_control_an_AsyncLocal_set_in_a_continuation_stays_in_the_method()
    {
        var (seen, left, _) = TwoUsers(PlainSeeThenSet);
        Assert.Null(left);
        Assert.Null(seen);
    }

    [Fact]
    public void Pooled_builder_an_AsyncLocal_set_in_a_continuation_does_not_reach_the_next_user_of_the_box()
    {
        var (seen, left, sameBox) = TwoUsers(PooledSeeThenSet);
        Assert.True(sameBox, "the second call should reuse the first call's box from this thread's pool");
        Assert.Null(left);
        Assert.Null(seen);
    }

    static (string? InCaller, bool Done) CallerAfterFirstAwait(Func<string, Task, ValueTask<int>> method) => OnLoopThread(() =>
    {
        var gate = new TaskCompletionSource();
        var vt = method("set-inside", gate.Task);
        var inCaller = Tag.Value; // the method is suspended at its await: its own value should not be visible here
        gate.SetResult();
        return (inCaller, vt.Result == 1);
    });

    [Fact]
    public void Plain_builder_control_an_AsyncLocal_set_before_the_first_await_stays_in_the_method()
    {
        var (inCaller, done) = CallerAfterFirstAwait(PlainSetThenWait);
        Assert.True(done);
        Assert.Null(inCaller);
    }

    [Fact]
    public void Pooled_builder_an_AsyncLocal_set_before_the_first_await_stays_in_the_method()
    {
        var (inCaller, done) = CallerAfterFirstAwait(PooledSetThenWait);
        Assert.True(done);
        Assert.Null(inCaller);
    }
}
